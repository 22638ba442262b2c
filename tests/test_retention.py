"""Retention as one table of truth: every table holding personal data has a row saying how
long and why; each purge deletes only what is past its time, a batch at a time; the public
page lists every row; the nightly task runs the rows it owns."""

import re
from datetime import timedelta

import pytest

from app.accounts.models import Invitation, LoginThrottle, Membership, User, UserSession, Workspace
from app.db import connection, utcnow
from app.mail.models import OutboundEmail
from app.move_database import product_models
from app.privacy.restriction import retention
from app.privacy.restriction.models import OutboundKind
from app.staff.models import AuditEntry

# Column names that hold, or may hold, something about a person.
PERSONAL = re.compile(r"email|name|body|message|address|^ip$|client|user_agent|phone|text|"
                      r"details|payload|log|error|preview|url|device|origin|filename|data|"
                      r"config|reason|action|summary|greeting|country|secret|wrapped_key|to$|"
                      r"subject|actor")

NOW = utcnow()
OLD, RECENT = NOW - timedelta(days=800), NOW - timedelta(hours=1)


def plain(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def test_every_table_holding_personal_data_has_a_retention_row():
    """The data inventory: a model that gains a column holding personal data fails here
    until the table says how long it is kept and why."""
    missing = []
    for model in product_models():
        table = model._meta.table_name
        personal = [f.column_name for f in model._meta.sorted_fields if PERSONAL.search(f.column_name)]
        if personal and table not in retention.covered_tables():
            missing.append(f"{table}: {', '.join(personal)}")
    assert not missing, "no retention row for:\n" + "\n".join(missing)


def test_every_row_names_real_tables_a_reason_and_who_runs_its_purge():
    tables = {m._meta.table_name for m in product_models()}
    for row in retention.RETENTION:
        assert set(row.tables) <= tables, row.key
        assert row.what and row.kept and row.why and row.runs_in, row.key
    assert len({r.key for r in retention.RETENTION}) == len(retention.RETENTION)
    assert {r.key for r in retention.mine()} == {
        "unverified", "sessions", "throttles", "invitations", "outbox", "access-log"}


def test_the_public_retention_page_lists_every_row(app, client):
    answer = client.get("/privacy/retention")
    assert answer.status_code == 200
    page = plain(answer)
    with app.test_request_context():
        for row in retention.RETENTION:
            assert row.what in page.replace("&#39;", "'") or row.what.replace("'", "&#39;") in \
                answer.get_data(as_text=True), row.key
            assert f'id="keep-{row.key}"' in answer.get_data(as_text=True)
    assert "10 years after the workspace is deleted" in page  # read from the setting


def made(app, fn):
    with app.test_request_context(), connection():
        return fn()


def test_unconfirmed_signups_go_after_seven_days_with_their_empty_workspace(app, user):
    from app.accounts import service

    def setup():
        service.sign_up("Old Unconfirmed", "old@example.com", "a long enough password")
        service.sign_up("New Unconfirmed", "new@example.com", "a long enough password")
        User.update(created_at=NOW - timedelta(days=8)).where(User.email == "old@example.com").execute()

    made(app, setup)
    with app.test_request_context(), connection():
        assert retention.purge_unverified_signups() == 1
        assert {u.email for u in User.select()} == {"owner@example.com", "new@example.com"}
        assert Workspace.select().count() == 2 and Membership.select().count() == 2


def test_ended_sessions_and_old_login_throttles_go_after_thirty_days(app, user):
    def setup():
        UserSession.create(sid="old", user=user, last_seen_at=NOW - timedelta(days=31),
                           created_at=NOW - timedelta(days=31))
        UserSession.create(sid="live", user=user)
        LoginThrottle.create(email="a@example.com", client="1.2.3.4", failures=3,
                             last_failure_at=NOW - timedelta(days=31))
        LoginThrottle.create(email="b@example.com", client="1.2.3.4", failures=3,
                             last_failure_at=RECENT)

    made(app, setup)
    with app.test_request_context(), connection():
        assert retention.purge_ended_sessions() == 1
        assert retention.purge_login_throttles() == 1
        assert {s.sid for s in UserSession.select()} == {"live"}
        assert {t.email for t in LoginThrottle.select()} == {"b@example.com"}


def test_invitations_go_fourteen_days_after_they_were_sent_once_no_longer_open(app, user):
    def setup():
        ws = Membership.get(Membership.user == user).workspace_id
        sent = NOW - timedelta(days=15)
        Invitation.create(workspace=ws, email="gone@example.com", created_at=sent,
                          expires_at=sent + timedelta(days=7))
        Invitation.create(workspace=ws, email="open@example.com", created_at=sent,
                          expires_at=NOW + timedelta(days=1))
        Invitation.create(workspace=ws, email="fresh@example.com", created_at=RECENT,
                          expires_at=NOW - timedelta(minutes=1))

    made(app, setup)
    with app.test_request_context(), connection():
        assert retention.purge_old_invitations() == 1
        assert {i.email for i in Invitation.select()} == {"open@example.com", "fresh@example.com"}


def test_outbox_emails_go_after_thirty_days_in_batches(app, user, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)

    def setup():
        OutboundEmail.delete().execute()
        for i in range(5):
            email = OutboundEmail.create(to=f"p{i}@example.com", subject="s", text_body="t",
                                         html_body="h", status="sent",
                                         created_at=NOW - timedelta(days=31))
            OutboundKind.create(email=email, kind="away_notice")
        OutboundEmail.create(to="kept@example.com", subject="s", text_body="t", html_body="h")

    made(app, setup)
    with app.test_request_context(), connection():
        assert retention.purge_outbox() == 5
        assert [e.to for e in OutboundEmail.select()] == ["kept@example.com"]
        assert OutboundKind.select().count() == 0


def test_access_log_entries_go_after_two_years(app, user):
    def setup():
        ws = Membership.get(Membership.user == user).workspace_id
        AuditEntry.create(workspace_id=ws, staff_email="s@lumnar.example", action="old",
                          created_at=NOW - timedelta(days=731))
        AuditEntry.create(workspace_id=ws, staff_email="s@lumnar.example", action="recent")

    made(app, setup)
    with app.test_request_context(), connection():
        assert retention.purge_access_log() == 1
        assert [e.action for e in AuditEntry.select()] == ["recent"]


def test_the_nightly_task_runs_every_row_it_owns_and_reports_counts(app, user):
    with app.test_request_context(), connection():
        counts = retention.run()
    assert set(counts) == {r.key for r in retention.mine()}
    assert all(isinstance(n, int) for n in counts.values())


@pytest.mark.parametrize("row", [r for r in retention.RETENTION if r.purge is not None],
                         ids=lambda r: r.key)
def test_every_purge_in_the_table_runs_on_an_empty_database(app, user, row):
    with app.test_request_context(), connection():
        assert row.purge() == 0
