"""Requests to Lumnar: the contact form and an owner's privacy requests are kept with a due date
one calendar month out and acknowledged by e-mail; staff answer them from a queue (overdue
first, staff only, every look at a workspace's request in its access log), extend a due date
once with the reason sent, and get a morning digest; /.well-known/security.txt says where to
report a weakness."""

import calendar
import re
from datetime import date, datetime, timedelta, timezone

import pytest

from app.contact import service
from app.contact.models import ContactRequest, RequestMessage
from app.db import connection
from app.mail.models import OutboundEmail
from app.staff.models import AuditEntry
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `agent_fixture` is `agent`)
    agent_fixture,
    text,
    workspace_id_of,
    ws_fixture,
)
from tests.conftest import Client, db_state, log_in, make_user, staff_client
from tests.mailcatcher import text_of

VISITOR = "vera@visitor.example"
FORM = {"name": "Vera Visitor", "email": VISITOR, "topic": "privacy",
        "message": "Please send me a copy of what you keep about me."}


def expected_due(day: date) -> date:
    """One calendar month later, worked out here on its own: the same day next month, or that
    month's last day when it is shorter."""
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def today() -> date:
    return datetime.now(timezone.utc).date()


def requests_state() -> dict:
    return db_state(ContactRequest, RequestMessage, OutboundEmail)


def only_request() -> ContactRequest:
    with connection():
        (found,) = ContactRequest.select()
        return found


def send(client, **over):
    return client.post_form("/contact", {**FORM, **over})


@pytest.fixture
def staff(app):
    return staff_client(app)


@pytest.fixture
def filed(app, auth, ws) -> ContactRequest:
    """A deletion request the owner filed from the dashboard."""
    answer = auth.post_form("/dashboard/requests",
                            {"kind": "deletion", "details": "Delete the Shop site's visitors."})
    assert answer.status_code == 303, text(answer)
    return only_request()


# --- due dates -------------------------------------------------------------------------------


@pytest.mark.parametrize("received, due", [
    (date(2025, 1, 31), date(2025, 2, 28)),
    (date(2024, 1, 31), date(2024, 2, 29)),   # leap year
    (date(2024, 1, 29), date(2024, 2, 29)),
    (date(2025, 1, 28), date(2025, 2, 28)),
    (date(2025, 3, 31), date(2025, 4, 30)),
    (date(2025, 5, 31), date(2025, 6, 30)),
    (date(2025, 8, 31), date(2025, 9, 30)),
    (date(2025, 12, 31), date(2026, 1, 31)),  # into the next year
    (date(2025, 2, 28), date(2025, 3, 28)),
    (date(2024, 2, 29), date(2024, 3, 29)),
    (date(2025, 6, 15), date(2025, 7, 15)),
])
def test_a_request_is_due_one_calendar_month_after_it_arrives(app, received, due):
    assert expected_due(received) == due  # the table agrees with the rule written in words
    at = datetime.combine(received, datetime.min.time()) + timedelta(hours=23, minutes=59)
    with app.test_request_context(), connection():
        kept = service.submit("Vera Visitor", VISITOR, "question", "When?", received_at=at)
        assert ContactRequest.get_by_id(kept.id).due_on == due


def test_a_request_sent_today_is_due_one_calendar_month_from_today(client):
    assert send(client).status_code == 200
    assert only_request().due_on == expected_due(today())


# --- the contact form ------------------------------------------------------------------------


@pytest.mark.config(CONTACT_EMAIL="help@lumnar.example")
def test_the_contact_form_keeps_the_request_and_acknowledges_it_by_email(client, smtp):
    page = client.get("/contact")
    assert page.status_code == 200
    assert 'name="message"' in text(page) and 'name="topic"' in text(page)
    answer = send(client)
    assert answer.status_code == 200
    kept = only_request()
    assert (kept.name, kept.email, kept.topic, kept.status) == (
        "Vera Visitor", VISITOR, "privacy", "new")
    assert kept.reference in text(answer)
    due = f"{kept.due_on.day} {kept.due_on:%B %Y}"
    assert due in text(answer)

    mail = smtp.wait_for(VISITOR, kept.reference)
    body = text_of(mail)
    assert kept.reference in body and due in body and "privacy request" in body
    assert "help@lumnar.example" in body
    # The form is open to anyone: what they wrote is not sent on to the address they typed.
    assert FORM["message"] not in body and FORM["name"] not in body


def test_a_filled_honeypot_is_refused_quietly_and_nothing_is_stored(client, smtp):
    before = requests_state()
    answer = send(client, website="https://spam.example")
    assert answer.status_code == 400
    assert requests_state() == before
    assert not smtp.to(VISITOR)


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_a_flood_of_contact_messages_is_refused_with_429(client):
    for i in range(10):
        assert send(client, message=f"message {i}").status_code == 200
    before = requests_state()
    answer = send(client, message="one too many")
    assert answer.status_code == 429
    assert "Too many attempts in a short time." in text(answer)
    assert requests_state() == before


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "Enter a name."),
    ("name", "x" * 121, "Use at most 120 characters."),
    ("email", "not-an-address", "Enter a valid e-mail address"),
    ("email", "", "Enter your e-mail address."),
    ("topic", "", "Choose what your message is about."),
    ("topic", "billing-dispute", "Choose what your message is about."),
    ("message", "   ", "Write your message."),
    ("message", "x" * 5001, "Use at most 5000 characters."),
])
@pytest.mark.parametrize("htmx", [False, True])
def test_bad_input_on_the_contact_form_is_refused_beside_its_field_with_422(
        client, smtp, field, value, message, htmx):
    before = requests_state()
    answer = client.post_form("/contact", {**FORM, field: value}, htmx=htmx)
    assert answer.status_code == 422
    html = text(answer)
    error = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', html)
    assert error and message in error.group(1)
    assert 'aria-invalid="true"' in html
    assert requests_state() == before and not smtp.messages


def test_script_in_a_request_is_shown_as_text_to_staff(client, staff):
    assert send(client, name="<script>alert(1)</script>",
                message="<img src=x onerror=alert(2)>").status_code == 200
    page = text(staff.get(f"/staff/requests/{only_request().id}"))
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<img src=x" not in page


# --- an owner's privacy requests -------------------------------------------------------------


def test_an_owner_files_a_privacy_request_from_the_dashboard_and_sees_its_due_date(
        auth, filed, smtp):
    assert (filed.topic, filed.kind, filed.email, filed.status) == (
        "privacy", "deletion", "owner@example.com", "new")
    listing = text(auth.get("/dashboard/requests"))
    assert filed.reference in listing
    assert f"{filed.due_on.day} {filed.due_on:%B %Y}" in listing and "New" in listing
    page = auth.get(f"/dashboard/requests/{filed.id}")
    assert page.status_code == 200 and "Delete the Shop site" in text(page)
    body = text_of(smtp.wait_for("owner@example.com", filed.reference))
    assert "delete my data" in body


@pytest.mark.parametrize("data, field, message", [
    ({"kind": "", "details": "Please."}, "kind", "Choose what you are asking for."),
    ({"kind": "everything", "details": "Please."}, "kind", "Choose what you are asking for."),
    ({"kind": "access", "details": " "}, "details", "Say what you are asking for."),
])
def test_bad_input_on_the_dashboard_request_form_is_refused_with_422(auth, ws, data, field,
                                                                     message):
    before = requests_state()
    answer = auth.post_form("/dashboard/requests", data)
    assert answer.status_code == 422
    assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', text(answer))
    assert requests_state() == before


def test_an_agent_sees_the_workspaces_requests_but_only_the_owner_files_one(filed, agent):
    client = agent["client"]
    assert filed.reference in text(client.get("/dashboard/requests"))
    assert client.get(f"/dashboard/requests/{filed.id}").status_code == 200
    before = requests_state()
    answer = client.post_form("/dashboard/requests", {"kind": "access", "details": "All of it."})
    assert answer.status_code == 403
    assert requests_state() == before


def test_another_workspaces_request_is_404_for_a_member(app, filed):
    make_user(app, email="rival@example.com", name="Rita Rival")
    rival = Client(app.test_client())
    log_in(rival, "rival@example.com")
    assert rival.get(f"/dashboard/requests/{filed.id}").status_code == 404
    assert filed.reference not in text(rival.get("/dashboard/requests"))


def test_a_request_from_the_contact_page_is_in_no_workspace(auth, ws, client):
    anonymous = Client(auth.application.test_client())
    assert send(anonymous).status_code == 200
    kept = only_request()
    assert kept.workspace_id is None
    assert auth.get(f"/dashboard/requests/{kept.id}").status_code == 404


# --- staff -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("get", "/staff/requests/"), ("get", "/staff/requests/{id}"),
    ("post", "/staff/requests/{id}/reply"), ("post", "/staff/requests/{id}/status"),
    ("post", "/staff/requests/{id}/extend"),
])
def test_non_staff_get_404_on_the_staff_queue(client, auth, filed, method, path):
    url = path.format(id=filed.id)
    before = requests_state()
    anonymous = Client(auth.application.test_client())
    for who in (anonymous, auth):
        if method == "get":
            assert who.get(url).status_code == 404
        else:
            data = {"body": "Hi", "status": "closed", "reason": "Because"}
            assert who.post_form(url, data).status_code == 404
    assert requests_state() == before


def test_a_staff_reply_reaches_the_requester_and_the_thread(auth, filed, staff, smtp):
    queue = text(staff.get("/staff/requests/"))
    assert filed.reference in queue
    answer = staff.post_form(f"/staff/requests/{filed.id}/reply",
                             {"body": "Done: the visitors are deleted.\nAnything else?"})
    assert answer.status_code == 303
    mail = smtp.wait_for("owner@example.com", f"Re: your request {filed.reference}")
    assert "Done: the visitors are deleted.\nAnything else?" in text_of(mail).replace("\r\n", "\n")
    assert "Stella Staff" in text_of(mail)
    with connection():
        (entry,) = ContactRequest.get_by_id(filed.id).thread
        assert (entry.kind, entry.body) == ("reply", "Done: the visitors are deleted.\nAnything else?")
        assert ContactRequest.get_by_id(filed.id).status == "answered"
    assert "Done: the visitors are deleted." in text(staff.get(f"/staff/requests/{filed.id}"))
    # The owner reads the same thread in the dashboard.
    assert "Done: the visitors are deleted." in text(auth.get(f"/dashboard/requests/{filed.id}"))
    assert "Answered" in text(auth.get("/dashboard/requests"))


def test_staff_looks_at_a_workspaces_request_go_to_its_access_log(auth, ws, filed, staff):
    staff.get(f"/staff/requests/{filed.id}")
    staff.post_form(f"/staff/requests/{filed.id}/status", {"status": "in_progress"})
    with connection():
        actions = [e.action for e in AuditEntry.select().where(AuditEntry.workspace_id == ws)
                   .order_by(AuditEntry.id)]
    assert actions == [f"opened request {filed.reference}",
                       f"changed the status of request {filed.reference}"]
    assert f"opened request {filed.reference}" in text(auth.get("/dashboard/access-log"))


def test_staff_change_a_requests_status_and_a_bad_status_is_refused(filed, staff):
    url = f"/staff/requests/{filed.id}/status"
    assert staff.post_form(url, {"status": "in_progress"}).status_code == 303
    assert only_request().status == "in_progress"
    before = requests_state()
    answer = staff.post_form(url, {"status": "deleted"})
    assert answer.status_code == 422 and "Choose a status from the list." in text(answer)
    assert requests_state() == before


def test_an_extension_is_allowed_once_with_its_reason_emailed(filed, staff, smtp):
    url = f"/staff/requests/{filed.id}/extend"
    reason = "Your workspace holds many sites; gathering every copy takes longer."
    assert staff.post_form(url, {"reason": reason}).status_code == 303
    extended = only_request()
    assert extended.due_on == service.add_months(filed.due_on, 2)
    assert extended.extension_reason == reason and extended.extended_at is not None
    mail = smtp.wait_for("owner@example.com", "More time")
    body = text_of(mail)
    assert reason in body and f"{extended.due_on.day} {extended.due_on:%B %Y}" in body
    with connection():
        assert [e.kind for e in RequestMessage.select()] == ["extension"]

    before, mails = requests_state(), len(smtp.messages)
    again = staff.post_form(url, {"reason": "Still more to do."})
    assert again.status_code == 409
    assert "extended once already" in text(again)
    assert requests_state() == before and len(smtp.messages) == mails


def test_an_extension_needs_a_reason(filed, staff):
    before = requests_state()
    answer = staff.post_form(f"/staff/requests/{filed.id}/extend", {"reason": "  "})
    assert answer.status_code == 422 and "Say why more time is needed" in text(answer)
    assert requests_state() == before


def make_requests(app, *specs) -> list[ContactRequest]:
    """Requests as (reference label, days until due, status)."""
    made = []
    with app.test_request_context(), connection():
        for label, days, status in specs:
            kept = service.submit(label, f"{label.lower()}@example.com", "question", "Hello")
            ContactRequest.update(due_on=today() + timedelta(days=days), status=status).where(
                ContactRequest.id == kept.id).execute()
            made.append(ContactRequest.get_by_id(kept.id))
    return made


def test_overdue_requests_come_first_in_the_queue_marked_in_words(app, staff):
    soon, late, answered, later, very_late = make_requests(
        app, ("Soon", 3, "new"), ("Late", -2, "in_progress"), ("Answered", -9, "answered"),
        ("Later", 20, "new"), ("Verylate", -5, "new"))
    html = text(staff.get("/staff/requests/"))
    order = [r.reference for r in (very_late, late, soon, later)]
    assert [html.index(ref) for ref in order] == sorted(html.index(ref) for ref in order)
    assert answered.reference not in html  # answered: not waiting for us
    assert "overdue by 5 days" in html and "overdue by 2 days" in html
    assert html.count("overdue by") == 2
    everything = text(staff.get("/staff/requests/?show=all"))
    assert answered.reference in everything
    assert everything.index(late.reference) < everything.index(answered.reference)


def test_the_digest_lists_open_requests_overdue_first_to_every_staff_member(app, staff, smtp):
    make_user(app, email="second@lumnar.example", name="Sam Staff")
    with connection():
        from app.accounts.models import User

        User.update(is_staff=True).where(User.email == "second@lumnar.example").execute()
    soon, late, closed = make_requests(app, ("Soon", 3, "new"), ("Late", -4, "in_progress"),
                                       ("Closed", -30, "closed"))
    from jobs.contact import request_digest

    with app.app_context():
        request_digest()
    for address in ("staff@lumnar.example", "second@lumnar.example"):
        body = text_of(smtp.wait_for(address, "Requests waiting: 2 open, 1 overdue"))
        assert body.index(late.reference) < body.index(soon.reference)
        assert "OVERDUE by 4 days" in body and closed.reference not in body
    assert not smtp.to("owner@example.com")


def test_no_digest_is_sent_when_no_request_is_open(app, staff, smtp):
    make_requests(app, ("Answered", -3, "answered"), ("Closed", -30, "closed"))
    sent = len(smtp.messages)
    from jobs.contact import request_digest

    with app.app_context():
        request_digest()
        assert service.send_digest() == 0
    with connection():
        assert not OutboundEmail.select().where(OutboundEmail.subject.contains("waiting")).count()
    assert len(smtp.messages) == sent


# --- security.txt ----------------------------------------------------------------------------


@pytest.mark.config(CONTACT_EMAIL="security@lumnar.example", BASE_URL="https://lumnar.example")
def test_security_txt_names_the_contact_and_expires_within_a_year(client):
    answer = client.get("/.well-known/security.txt")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    fields = {}
    for line in text(answer).splitlines():
        name, _, value = line.partition(": ")
        fields.setdefault(name, []).append(value)
    assert fields["Contact"] == ["mailto:security@lumnar.example", "https://lumnar.example/contact"]
    assert fields["Preferred-Languages"] == ["en"]
    assert fields["Canonical"] == ["https://lumnar.example/.well-known/security.txt"]
    (expires,) = fields["Expires"]
    when = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    assert now + timedelta(days=30) < when < now + timedelta(days=365)
    assert client.get("/contact").status_code == 200  # the page it names answers
