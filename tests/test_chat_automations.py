"""Chat events reach the workspace's automations: what a visitor does in the widget and what
an agent does in the dashboard start the automations listening for it, after the chat write
committed, and nothing of another workspace. Huey runs inline; the CRM is a loopback server."""

import pytest

from app.automations import service as automations
from app.automations import vault
from app.automations.models import AutomationRun
from app.db import connection
from tests.chat_fixtures import (  # noqa: F401  (fixtures by name)
    WidgetVisitor,
    agent_fixture,
    conversation_fixture,
    count,
    online_fixture,
    rival_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.loopback import FakeCRM, Recorder

pytestmark = pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True)
TOKEN = "crm-tok-51c0ffee9a4b2c3f5e6d8a9b"


def listen(app, ws, event, flow="http_request", **config):
    # Saving reads the app's settings (the loopback permission above): inside its context.
    with app.app_context(), connection():
        return automations.create_automation(ws, name=f"On {event}", flow=flow, config=config,
                                             trigger="chat", chat_event=event)


def statuses(automation):
    with connection():
        return [r.status for r in AutomationRun.select().where(AutomationRun.automation == automation.id)]


def test_a_visitor_message_starts_the_message_received_automation_with_its_text(
        app, ws, site, online):
    with Recorder() as hook:
        automation = listen(app, ws, "message_received", method="POST", url=hook.url("/in"),
                            body='{"said": {{ event.text|tojson }}, "site": {{ event.site|tojson }}}',
                            expected_status="2xx")
        guest = WidgetVisitor.arrive(app, site.site_key)
        assert guest.send("Do you deliver on Sundays?").status_code == 200
        assert guest.send("And to Lyon?").status_code == 200
    assert [r.json()["said"] for r in hook.requests] == ["Do you deliver on Sundays?", "And to Lyon?"]
    assert hook.requests[0].json()["site"] == site.name
    assert statuses(automation) == ["succeeded", "succeeded"]


def test_a_new_conversation_and_its_resolution_start_their_automations_once(
        app, ws, site, online, auth):
    with Recorder() as hook:
        started = listen(app, ws, "conversation_started", method="POST", url=hook.url("/started"),
                         body="{}", expected_status="2xx")
        resolved = listen(app, ws, "conversation_resolved", method="POST", url=hook.url("/resolved"),
                          body='{"id": {{ event.conversation_id }}}', expected_status="2xx")
        guest = WidgetVisitor.arrive(app, site.site_key)
        guest.send("first")
        guest.send("second")
        conv = guest.conversation()
        for _ in range(2):  # resolving twice is one resolution
            response = auth.post_form(f"/dashboard/conversations/{conv.id}/status",
                                      {"status": "resolved"})
            assert response.status_code in (200, 303)
    assert [r.path for r in hook.requests] == ["/started", "/resolved"]
    assert hook.requests[1].json() == {"id": conv.id}
    assert statuses(started) == ["succeeded"] and statuses(resolved) == ["succeeded"]


def test_a_visitor_leaving_an_email_becomes_one_crm_contact(app, ws, site, online):
    with app.app_context(), connection():
        credential = vault.store(ws, "CRM", "CRM token", "api_token", {"token": TOKEN})
    with FakeCRM(TOKEN) as crm:
        listen(app, ws, "visitor_left_email", flow="chat_lead_crm", base_url=crm.url("/api"),
               credential=str(credential.id))
        guest = WidgetVisitor.arrive(app, site.site_key)
        assert guest.send("Hi", email="lead@example.com", name="Lea Lead").status_code == 200
        assert guest.send("Still there?").status_code == 200  # same address: no new event
        other = WidgetVisitor.arrive(app, site.site_key)
        assert other.send("Me too", email="LEAD@example.com").status_code == 200
    contacts = [c for c in crm.contacts.values() if c["email"] == "lead@example.com"]
    assert len(contacts) == 1
    assert contacts[0]["name"] == "Lea Lead"


def test_another_workspaces_chat_starts_none_of_our_automations(app, ws, site, online, rival):
    with Recorder() as hook:
        automation = listen(app, ws, "message_received", method="POST", url=hook.url("/in"),
                            body="{}", expected_status="2xx")
        assert rival["visitor"].send("rival words").status_code == 200
    assert hook.requests == [] and statuses(automation) == []


def test_a_paused_automation_hears_nothing_and_chat_goes_on(app, ws, site, online):
    with Recorder() as hook:
        automation = listen(app, ws, "message_received", method="POST", url=hook.url("/in"),
                            body="{}", expected_status="2xx")
        with app.app_context(), connection():
            automations.pause(automation)
        guest = WidgetVisitor.arrive(app, site.site_key)
        response = guest.send("Hello?")
    assert response.status_code == 200 and "Hello?" in text(guest.chat())
    assert hook.requests == [] and statuses(automation) == []
