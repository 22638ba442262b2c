"""Restriction of processing and objection to e-mail: an owner's one switch holds every
automation (no resume, no run, no dry run, not even by staff), stops usage counting and
non-essential e-mail, keeps the data and the chat, shows a banner and goes on the access log;
every non-essential e-mail carries a one-click unsubscribe (RFC 8058) that needs no login."""

import json
import re
from pathlib import Path

import pytest

from app.accounts.models import Workspace
from app.automations import service as automations
from app.automations.models import Automation, AutomationRun
from app.chat.models import Conversation, Message
from app.db import connection, utcnow
from app.insight import service as insight
from app.insight.models import InsightCount
from app.mail.models import OutboundEmail
from app.privacy.restriction import objection
from app.privacy.restriction.models import EmailObjection
from app.privacy.restriction.service import LIFTED, SET, ProcessingRestricted
from app.staff.models import AuditEntry
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    AGENT_EMAIL,
    WidgetVisitor,
    agent_fixture,
    reply,
    site_fixture,
    ws_fixture,
)
from tests.conftest import Client, log_in, staff_client

OWNER = "owner@example.com"


def plain(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def restrict(auth):
    return auth.post_form("/dashboard/privacy/restriction")


def lift(auth):
    return auth.post_form("/dashboard/privacy/restriction/lift")


def make_automation(app, ws, **fields) -> Automation:
    with app.test_request_context(), connection():
        return Automation.create(**{
            "workspace": ws, "name": "Nightly", "flow": "http_request",
            "config": json.dumps({"url": "https://example.com", "method": "POST"}),
            "trigger": Automation.SCHEDULE, "cron": "* * * * *", "next_run_at": utcnow(), **fields})


def loaded(automation_id) -> Automation:
    return Automation.select(Automation, Workspace).join(Workspace).where(
        Automation.id == automation_id).get()


# --- restriction -------------------------------------------------------------------------------


def test_restricted_workspace_runs_nothing(app, auth, ws):
    """While restricted: no schedule fires, no chat event starts a run, no manual run, no
    dry run (the staff's test run included), no resume; lifting brings the automation back."""
    scheduled = make_automation(app, ws)
    on_chat = make_automation(app, ws, name="On chat", trigger=Automation.CHAT, cron="",
                              chat_event="conversation_started", next_run_at=None)
    paused = make_automation(app, ws, name="Paused", paused=True, next_run_at=None)
    assert restrict(auth).status_code == 303
    with app.test_request_context(), connection():
        assert automations.tick() == 0
        assert automations.publish_chat_event(ws, "conversation_started", {}) == 0
        for dry_run in (False, True):
            with pytest.raises(ProcessingRestricted):
                automations.run_now(loaded(scheduled.id), dry_run=dry_run)
        with pytest.raises(ProcessingRestricted):
            automations.resume(loaded(paused.id))
        assert not automations.is_active(loaded(on_chat.id))
    # Through the owner's buttons and the staff's test run: refused with the reason.
    answer = auth.post_form(f"/dashboard/automations/{scheduled.id}/run")
    assert answer.status_code == 409 and "Processing is restricted" in plain(answer)
    assert auth.post_form(f"/dashboard/automations/{paused.id}/resume").status_code == 409
    staff = staff_client(app)
    answer = staff.post_form(f"/staff/workspaces/{ws}/automations/{scheduled.id}/test",
                             {"dry_run": "y"})
    assert answer.status_code == 409 and "Processing is restricted" in plain(answer)
    with connection():
        assert AutomationRun.select().count() == 0
        assert Automation.select().count() == 3  # kept
        assert loaded(paused.id).paused
    # Lifted: the schedule fires again.
    assert lift(auth).status_code == 303
    with app.test_request_context(), connection():
        assert automations.tick() == 1


def test_a_run_queued_before_the_restriction_is_skipped_not_run(app, auth, ws):
    automation = make_automation(app, ws)
    with app.test_request_context(), connection():
        run = AutomationRun.create(automation=automation, workspace=ws,
                                   trigger=Automation.MANUAL, payload="{}", dry_run=True)
    restrict(auth)
    with app.test_request_context(), connection():
        done = automations.execute(run.id)
        assert done.status == AutomationRun.SKIPPED and "restricts processing" in done.log


def test_the_access_log_names_the_owner_who_set_and_lifted_the_restriction(app, auth, ws, user):
    restrict(auth)
    restrict(auth)  # a second click changes nothing and logs nothing
    lift(auth)
    with connection():
        entries = [(e.staff_id, e.staff_email, e.action) for e in
                   AuditEntry.select().where(AuditEntry.workspace_id == ws).order_by(AuditEntry.id)]
        assert entries == [(user.id, OWNER, SET), (user.id, OWNER, LIFTED)]
        workspace = Workspace.get_by_id(ws)
        assert not workspace.processing_restricted and workspace.restricted_at is None
        # The owner's own switch is not news for the staff-access digest.
        assert workspace.access_digest_after == max(e.id for e in AuditEntry.select())
    page = plain(auth.get("/dashboard/access-log"))
    assert f"{OWNER} {SET}" in page or (OWNER in page and SET in page)


def test_only_an_owner_may_restrict_processing(app, auth, ws, agent):
    member = Client(app.test_client())
    log_in(member, AGENT_EMAIL)
    assert restrict(member).status_code == 403
    page = plain(member.get("/dashboard/privacy"))
    assert "Only an owner of the workspace can turn it on or off." in page
    with connection():
        assert not Workspace.get_by_id(ws).processing_restricted


def test_a_banner_on_every_dashboard_page_says_processing_is_restricted(app, auth, ws):
    pages = ["/dashboard/inbox", "/dashboard/automations", "/dashboard/settings",
             "/dashboard/privacy"]
    for path in pages:
        assert "Processing is restricted" not in plain(auth.get(path)), path
    restrict(auth)
    for path in pages:
        answer = auth.get(path)
        assert answer.status_code == 200, path
        assert 'id="restricted"' in answer.get_data(as_text=True), path
    privacy = plain(auth.get("/dashboard/privacy"))
    assert "Lift the restriction" in privacy and "Restrict processing" in privacy


def test_usage_is_not_counted_while_restricted(app, auth, ws):
    insight.tally.take()
    restrict(auth)
    auth.get("/dashboard/inbox")
    with connection():
        insight.count("automation.run", workspace=Workspace.get_by_id(ws))
    insight.flush()
    with connection():
        names = {r.name for r in InsightCount.select() if r.name != "account.signed_up"}
    assert "chat.inbox" not in names and "automation.run" not in names


def test_chat_stays_readable_and_answerable_while_restricted(app, auth, ws, site, smtp):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("Do you ship to Iceland?").status_code == 200
    restrict(auth)
    conversation = guest.conversation()
    page = auth.get(f"/dashboard/conversations/{conversation.id}")
    assert page.status_code == 200 and "Do you ship to Iceland?" in plain(page)
    assert reply(auth, conversation.id, {"body": "Yes, we do."}).status_code in (200, 303)
    assert guest.send("Great, thanks").status_code == 200
    with connection():
        assert [m.body for m in Message.select().order_by(Message.id)] == [
            "Do you ship to Iceland?", "Yes, we do.", "Great, thanks"]
        assert Conversation.select().count() == 1


def test_non_essential_mail_is_not_sent_while_restricted_and_essential_mail_is(
        app, auth, ws, site, smtp):
    restrict(auth)
    guest = WidgetVisitor.arrive(app, site.site_key)
    guest.send("Anyone there?", email="ann@example.com")  # nobody online: an away notice
    automation = make_automation(app, ws, paused=True, next_run_at=None)
    with app.test_request_context(), connection():
        run = AutomationRun.create(automation=automation, workspace=ws, trigger="manual",
                                   status=AutomationRun.FAILED, payload="{}")
        automations.notify_failure(loaded(automation.id), run)
        assert OutboundEmail.select().where(OutboundEmail.subject.contains("New chat message")
                                            | OutboundEmail.subject.contains("failed")).count() == 0
    # A needed e-mail still goes: the password-reset link.
    Client(app.test_client()).post_form("/password/forgot", {"email": OWNER})
    assert smtp.wait_for(OWNER, "Reset your Lumnar password")


# --- objection to e-mail -----------------------------------------------------------------------


def away_notices(smtp):
    return [m for m in smtp.to(OWNER) if "New chat message" in m["Subject"]]


def test_one_click_unsubscribe_needs_no_login(app, site, smtp):
    """A non-essential e-mail carries List-Unsubscribe (https link) and List-Unsubscribe-Post;
    a POST to that link from nowhere (no cookie, no token, no confirmation) stops that kind
    of e-mail to that address, and the next one is not sent."""
    WidgetVisitor.arrive(app, site.site_key).send("First question", email="ann@example.com")
    notice = smtp.wait_for(OWNER, "New chat message")
    assert notice["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(.+)>", notice["List-Unsubscribe"]).group(1)
    assert url.startswith(app.config["BASE_URL"] + "/unsubscribe/")
    assert OWNER not in url  # the address does not show in the link
    stranger = app.test_client()  # no session, no CSRF token
    answer = stranger.post(url.removeprefix(app.config["BASE_URL"]),
                           data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and "gets no more" in plain(answer)
    with connection():
        assert [(o.email, o.kind) for o in EmailObjection.select()] == [(OWNER, "away_notice")]
    WidgetVisitor.arrive(app, site.site_key).send("Second question", email="bob@example.com")
    with connection():
        assert OutboundEmail.select().where(
            (OutboundEmail.to == OWNER) & OutboundEmail.subject.contains("New chat message")
        ).count() == 1
    assert len(away_notices(smtp)) == 1


def test_a_get_never_unsubscribes(app, user):
    with app.test_request_context(), connection():
        url = objection.unsubscribe_url(OWNER, "automation_failed")
    path = url.removeprefix(app.config["BASE_URL"])
    answer = app.test_client().get(path)
    assert answer.status_code == 200
    assert "Unsubscribe" in plain(answer) and 'method="post"' in answer.get_data(as_text=True)
    with connection():
        assert EmailObjection.select().count() == 0


@pytest.mark.parametrize("forge", ["garbage", "essential", "tampered", "other-key"])
def test_a_forged_unsubscribe_link_is_refused_and_changes_nothing(app, user, forge):
    with app.test_request_context(), connection():
        token = objection.token_for(OWNER, "automation_failed")
        if forge == "garbage":
            token = "not-a-token"
        elif forge == "essential":
            token = objection.token_for(OWNER, "password_changed")
        elif forge == "tampered":
            token = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
        else:
            from cryptography.fernet import Fernet

            token = Fernet(Fernet.generate_key()).encrypt(
                json.dumps([OWNER, "automation_failed"]).encode()).decode()
    client = app.test_client()
    assert client.get(f"/unsubscribe/{token}").status_code == 404
    assert client.post(f"/unsubscribe/{token}").status_code == 404
    with connection():
        assert EmailObjection.select().count() == 0


def test_essential_mail_carries_no_unsubscribe_header(app, user, smtp):
    Client(app.test_client()).post_form("/password/forgot", {"email": OWNER})
    message = smtp.wait_for(OWNER, "Reset your Lumnar password")
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None


def test_every_email_we_send_is_declared_essential_or_not():
    """A new e-mail template must be put in the table, with why it is needed or how to stop it."""
    templates = {p.stem for p in Path("templates/mail").glob("*.txt")}
    assert templates <= set(objection.MAIL_KINDS), templates - set(objection.MAIL_KINDS)
    assert {k.template for k in objection.NON_ESSENTIAL} == {
        "away_notice", "automation_failed", "automation_message", "mention"}
    assert all(k.why for k in objection.MAIL_KINDS.values())


def test_a_member_stops_and_restarts_a_kind_of_email_from_the_privacy_page(app, auth, ws):
    page = plain(auth.get("/dashboard/privacy"))
    assert "Lumnar sends no marketing e-mail" in page
    assert auth.post_form("/dashboard/privacy/email/automation_failed/stop").status_code == 303
    with connection():
        assert objection.objections_of(OWNER) == {"automation_failed"}
    assert "stopped for owner@example.com" in plain(auth.get("/dashboard/privacy"))
    assert auth.post_form("/dashboard/privacy/email/automation_failed/start").status_code == 303
    assert auth.post_form("/dashboard/privacy/email/verify/stop").status_code == 404
    with connection():
        assert objection.objections_of(OWNER) == set()
