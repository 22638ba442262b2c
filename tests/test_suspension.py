"""Suspension for fraud or abuse: staff suspend a workspace with a reason (on its access log);
its widget answers "unavailable" everywhere, its automations do not run, its members see why;
nothing is deleted, and lifting the suspension brings everything back."""

import re

import pytest

from app.accounts.models import Workspace
from app.automations import service as automations
from app.automations.models import Automation, AutomationRun
from app.chat.models import Conversation, Message
from app.db import connection, utcnow
from app.staff.models import AuditEntry
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    WidgetVisitor,
    online_fixture,
    site_fixture,
    ws_fixture,
)
from tests.conftest import staff_client

REASON = "Card testing through the chat widget, reported by Stripe."


def plain(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def suspend(staff, ws, reason=REASON):
    return staff.post_form(f"/staff/workspaces/{ws}/suspend", {"reason": reason})


def test_a_suspended_workspaces_widget_is_unavailable_and_its_data_kept(app, auth, ws, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("hello before").status_code == 200
    staff = staff_client(app)
    assert suspend(staff, ws).status_code == 303
    frame = app.test_client().get(f"/widget/{site.site_key}")
    assert frame.status_code == 404 and "Chat unavailable" in plain(frame)
    status = app.test_client().get(f"/widget/{site.site_key}/status?origin=https://shop.example.com")
    assert status.get_json()["allowed"] is False
    refused = guest.send("hello during")
    assert refused.status_code == 404
    with connection():
        assert [m.body for m in Message.select()] == ["hello before"]  # kept, nothing added
        assert Conversation.select().count() == 1
        [entry] = AuditEntry.select().where(AuditEntry.workspace_id == ws,
                                            AuditEntry.action.contains("suspended"))
        assert REASON in entry.action
    # Lifted: the widget takes messages again.
    assert staff.post_form(f"/staff/workspaces/{ws}/unsuspend").status_code == 303
    assert guest.send("hello after").status_code == 200


def test_members_see_why_their_workspace_is_suspended(app, auth, ws):
    suspend(staff_client(app), ws)
    page = plain(auth.get("/dashboard/inbox"))
    assert "This workspace is suspended." in page and REASON in page


def test_a_suspended_workspaces_automations_do_not_run(app, ws):
    with app.test_request_context(), connection():
        automation = Automation.create(workspace=ws, name="Nightly", flow="http_request",
                                       config='{"url": "https://example.com", "method": "POST"}',
                                       trigger=Automation.SCHEDULE, cron="* * * * *",
                                       next_run_at=utcnow())
    suspend(staff_client(app), ws)
    with app.test_request_context(), connection():
        assert automations.tick() == 0
        automation = Automation.select(Automation, Workspace).join(Workspace).where(
            Automation.id == automation.id).get()
        with pytest.raises(automations.RuleError, match="suspended"):
            automations.run_now(automation)
        assert AutomationRun.select().count() == 0
        assert Automation.select().count() == 1  # kept


@pytest.mark.parametrize("reason", ["", "spam", "x" * 501])
def test_a_suspension_needs_a_reason_the_customer_can_read(app, ws, reason):
    staff = staff_client(app)
    answer = suspend(staff, ws, reason)
    assert answer.status_code == 422
    assert "Give the reason" in plain(answer)
    with connection():
        assert Workspace.get_by_id(ws).suspended_at is None


def test_only_staff_can_suspend(app, auth, ws):
    assert suspend(auth, ws).status_code == 404
    with connection():
        assert Workspace.get_by_id(ws).suspended_at is None
