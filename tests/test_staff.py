"""The staff area: staff only (404 for anyone else), forms generated from each flow's Field
schema, bad input refused beside its field, and every look at a customer's data in their
access log."""

import re

import pytest

from app.accounts.models import Membership, User, Workspace
from app.automations import service, vault
from app.automations.models import Automation, AutomationRun
from app.db import connection
from app.staff.models import AuditEntry
from tests.conftest import Client, db_state, log_in, make_user

TOKEN = "crm-token-0a1b2c3d4e5f6a7b-wxyz"
STAFF = "ada@lumnar.example"


def workspace_of(email) -> Workspace:
    with connection():
        return Membership.get(Membership.user == User.by_email(email)).workspace


@pytest.fixture
def customer(app):
    """The customer's workspace (owner@example.com), with two credentials."""
    make_user(app)
    ws = workspace_of("owner@example.com")
    with app.app_context(), connection():
        token = vault.store(ws.id, "Pipedrive", "CRM token", "api_token", {"token": TOKEN})
        hook = vault.store(ws.id, "Slack", "Sales channel", "webhook_url",
                           {"url": "https://hooks.slack.example/T000/B000/abcd"})
    return {"ws": ws, "token": token, "hook": hook}


@pytest.fixture
def staff(app):
    make_user(app, email=STAFF, name="Ada Staff")
    with connection():
        User.update(is_staff=True).where(User.email == STAFF).execute()
    client = Client(app.test_client())
    log_in(client, email=STAFF)
    return client


def entries(ws) -> list[str]:
    with connection():
        return [e.action for e in AuditEntry.select().where(AuditEntry.workspace_id == ws.id)
                .order_by(AuditEntry.id)]


def crm_form(cred_id, **over):
    data = {"flow": "chat_lead_crm", "name": "Leads to CRM", "trigger": "chat",
            "chat_event": "visitor_left_email", "cron": "", "max_attempts": "",
            "cfg-base_url": "https://crm.example.com/api", "cfg-credential": str(cred_id),
            "cfg-extra": ""}
    data.update(over)
    return data


def make_automation(app, ws, cred, name="Leads to CRM"):
    with app.test_request_context(), connection():
        return service.create_automation(
            ws.id, name=name, flow="chat_lead_crm", trigger="chat", chat_event="visitor_left_email",
            config={"base_url": "https://crm.example.com/api", "credential": str(cred.id)})


STAFF_GETS = ["/staff/", "/staff/workspaces/{ws}", "/staff/workspaces/{ws}/automations/new",
              "/staff/workspaces/{ws}/automations/{a}", "/staff/workspaces/{ws}/runs/{run}"]
STAFF_POSTS = ["/staff/workspaces/{ws}/automations", "/staff/workspaces/{ws}/automations/{a}",
               "/staff/workspaces/{ws}/automations/{a}/delete",
               "/staff/workspaces/{ws}/automations/{a}/test"]


@pytest.mark.parametrize("who", ["anonymous", "owner"])
def test_the_staff_area_does_not_exist_for_anyone_else(app, client, customer, who):
    a = make_automation(app, customer["ws"], customer["token"])
    with connection():
        run = AutomationRun.create(automation=a, workspace=a.workspace_id, trigger="manual")
    if who == "owner":
        log_in(client)
    ids = {"ws": customer["ws"].id, "a": a.id, "run": run.id}
    before = db_state(Automation, AutomationRun, AuditEntry)
    for url in STAFF_GETS:
        assert client.get(url.format(**ids)).status_code == 404, url
    for url in STAFF_POSTS:
        assert client.post_form(url.format(**ids), crm_form(customer["token"].id)).status_code == 404, url
    assert db_state(Automation, AutomationRun, AuditEntry) == before


def test_staff_pick_a_workspace_and_the_customer_sees_it_in_the_access_log(app, staff, customer):
    ws = customer["ws"]
    page = staff.get("/staff/").get_data(as_text=True)
    assert f'href="/staff/workspaces/{ws.id}"' in page
    found = staff.get("/staff/?q=" + ws.name[:4], headers={"HX-Request": "true"}).get_data(as_text=True)
    assert found.lstrip().startswith('<section id="workspaces"') and "Olive Owner&#39;s workspace" in found
    assert entries(ws) == []  # the list of names is not a look at anyone's data
    assert staff.get(f"/staff/workspaces/{ws.id}").status_code == 200
    assert entries(ws) == ["viewed the automations list"]
    owner = Client(app.test_client())
    log_in(owner)
    log = owner.get("/dashboard/access-log").get_data(as_text=True)
    assert STAFF in log and "viewed the automations list" in log


def test_the_form_is_generated_from_the_flows_fields(app, staff, customer):
    ws = customer["ws"]
    other = make_user(app, email="rival@example.com", name="Rival")
    with app.app_context(), connection():
        vault.store(workspace_of(other.email).id, "Rival CRM", "Not yours", "api_token",
                    {"token": "rival-token-1234567890"})
    picker = staff.get(f"/staff/workspaces/{ws.id}/automations/new").get_data(as_text=True)
    for flow in ("http_request", "outgoing_webhook", "email", "slack_webhook", "chat_lead_crm"):
        assert f"flow={flow}" in picker
    page = staff.get(f"/staff/workspaces/{ws.id}/automations/new?flow=chat_lead_crm").get_data(as_text=True)
    for name, label in (("cfg-base_url", "CRM API base URL"), ("cfg-credential", "CRM API token"),
                        ("cfg-extra", "Extra contact fields (JSON object) (optional)"),
                        ("name", "Name"), ("trigger", "Trigger"), ("cron", "Schedule"),
                        ("chat_event", "Chat event")):
        assert re.search(rf'<label for="{name}">{re.escape(label)}', page), name
        assert f'id="{name}"' in page
    select = re.search(r'<select id="cfg-credential".*?</select>', page, re.S).group(0)
    assert "Pipedrive · CRM token (••••wxyz)" in select
    assert "Sales channel" not in select  # a webhook URL is not a kind this field takes
    assert "Not yours" not in page
    assert TOKEN not in page and TOKEN[:-4] not in page
    assert entries(ws) == ["opened a new automation form (New chat lead → CRM), listing credential labels"]


def test_staff_create_edit_test_run_and_delete_an_automation(app, staff, customer, smtp):
    ws, cred = customer["ws"], customer["token"]
    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations", crm_form(cred.id))
    assert response.status_code == 303, response.get_data(as_text=True)
    with connection():
        a = Automation.get(Automation.workspace == ws.id)
    assert response.headers["Location"] == f"/staff/workspaces/{ws.id}/automations/{a.id}"
    assert (a.name, a.flow, a.trigger, a.chat_event) == ("Leads to CRM", "chat_lead_crm", "chat",
                                                         "visitor_left_email")
    edit = staff.get(f"/staff/workspaces/{ws.id}/automations/{a.id}").get_data(as_text=True)
    assert 'value="https://crm.example.com/api"' in edit
    assert f'<option selected value="{cred.id}">' in edit or f'value="{cred.id}" selected' in edit

    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations/{a.id}",
                               crm_form(cred.id, name="Leads to Pipedrive", trigger="schedule",
                                        cron="0 8 * * 1-5"), htmx=True)
    assert response.status_code == 204
    with connection():
        a = Automation.get_by_id(a.id)
    assert (a.name, a.trigger, a.cron) == ("Leads to Pipedrive", "schedule", "0 8 * * 1-5")
    assert a.next_run_at is not None

    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations/{a.id}/test",
                               {"dry_run": "y"})
    assert response.status_code == 303
    with connection():
        run = AutomationRun.get(AutomationRun.automation == a.id)
    assert run.dry_run and run.trigger == "manual"
    assert response.headers["Location"] == f"/staff/workspaces/{ws.id}/runs/{run.id}"
    page = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Run #{run.id} of Leads to Pipedrive" in page and TOKEN not in page

    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations/{a.id}/delete")
    assert response.status_code == 303
    with connection():
        assert Automation.select().count() == 0
    assert entries(ws) == [
        "created automation 'Leads to CRM'",
        "viewed automation 'Leads to CRM'",
        "edited automation 'Leads to CRM'",
        "test-ran automation 'Leads to Pipedrive' (dry run)",
        f"viewed run #{run.id} of 'Leads to Pipedrive'",
        "deleted automation 'Leads to Pipedrive'",
    ]


BAD = [
    ({"trigger": "schedule", "cron": "every day at nine"}, "cron", "Not a valid schedule"),
    ({"trigger": "chat", "chat_event": ""}, "chat_event", "Choose the chat event"),
    ({"name": ""}, "name", "Give the automation a name."),
    ({"cfg-extra": '{"source": {{ event.nope '}, "cfg-extra", "Template error on line 1"),
    ({"cfg-extra": '["not", "an object"'}, "cfg-extra", "does not render to valid JSON"),
    ({"cfg-credential": ""}, "cfg-credential", "CRM API token is required."),
    ({"cfg-base_url": "http://127.0.0.1:8080/api"}, "cfg-base_url", "may not call private"),
    ({"cfg-base_url": "http://10.1.2.3/api"}, "cfg-base_url", "may not call private"),
    ({"max_attempts": "99"}, "max_attempts", "from 1 to"),
]


@pytest.mark.parametrize("fields, field, message", BAD)
def test_bad_input_is_refused_beside_its_field_and_nothing_changes(staff, customer, fields, field,
                                                                   message):
    ws = customer["ws"]
    before = db_state(Automation, AutomationRun)
    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations",
                               crm_form(customer["token"].id, **fields), htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert body.lstrip().startswith('<form id="automation-form"')  # the fragment alone
    error = re.search(rf'<p class="error" id="{field}-error">(.*?)</p>', body, re.S)
    assert error, body
    assert message in error.group(1)
    assert f'aria-describedby="{field}' in body or f'aria-describedby="{field}-hint {field}-error"' in body
    assert TOKEN not in body
    assert db_state(Automation, AutomationRun) == before
    assert entries(ws)[-1].startswith("tried to create an automation")


def test_unknown_flow_and_another_workspaces_credential_are_refused(app, staff, customer):
    ws = customer["ws"]
    other = make_user(app, email="rival@example.com", name="Rival")
    with app.app_context(), connection():
        theirs = vault.store(workspace_of(other.email).id, "Rival CRM", "Not yours", "api_token",
                             {"token": "rival-token-1234567890"})
    before = db_state(Automation)
    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations",
                               crm_form(customer["token"].id, flow="mystery"))
    assert response.status_code == 422 and "Unknown flow" in response.get_data(as_text=True)
    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations", crm_form(theirs.id))
    assert response.status_code == 422
    assert "Choose a credential of this workspace." in response.get_data(as_text=True)
    assert "Not yours" not in response.get_data(as_text=True)
    assert db_state(Automation) == before


def test_another_workspaces_automation_or_run_under_this_workspace_is_404(app, staff, customer):
    other = workspace_of(make_user(app, email="rival@example.com", name="Rival").email)
    a = make_automation(app, customer["ws"], customer["token"])
    with connection():
        run = AutomationRun.create(automation=a, workspace=a.workspace_id, trigger="manual")
    before = db_state(Automation, AutomationRun)
    assert staff.get(f"/staff/workspaces/{other.id}/automations/{a.id}").status_code == 404
    assert staff.get(f"/staff/workspaces/{other.id}/runs/{run.id}").status_code == 404
    assert staff.post_form(f"/staff/workspaces/{other.id}/automations/{a.id}/delete").status_code == 404
    assert staff.get("/staff/workspaces/999999").status_code == 404
    assert db_state(Automation, AutomationRun) == before


def test_a_failed_edit_changes_nothing_and_keeps_the_typed_values(app, staff, customer):
    ws, cred = customer["ws"], customer["token"]
    a = make_automation(app, ws, cred)
    before = db_state(Automation)
    response = staff.post_form(f"/staff/workspaces/{ws.id}/automations/{a.id}",
                               crm_form(cred.id, name="Renamed", trigger="schedule", cron="61 * * * *"))
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and 'value="Renamed"' in body
    assert "Not a valid schedule" in body
    assert db_state(Automation) == before


def test_only_staff_see_the_way_into_the_staff_area(app, staff, client, customer):
    assert 'href="/staff/"' in staff.get("/dashboard/inbox").get_data(as_text=True)
    log_in(client)
    assert 'href="/staff/"' not in client.get("/dashboard/inbox").get_data(as_text=True)
