"""The worker's writes wait their turn, a task that still meets a locked database is retried,
and an away notice is marked sent only together with its e-mails.

Another process is played by a second sqlite3 connection to the test's database file; tasks
run in Huey's immediate mode, on this thread's connection. The same promises are proved
under load through the real consumer in tests/e2e/test_worker_contention.py.
"""

import sqlite3

import pytest

from app.accounts.models import Membership, User
from app.chat.models import Conversation
from app.db import connection, database
from app.mail.models import OutboundEmail
from jobs import huey
from jobs.chat import send_away_notice
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    agent_fixture,
    conversation_fixture,
    online_fixture,
    site_fixture,
    visitor_fixture,
    ws_fixture,
)

NOTICE = "New chat message on Shop"


@pytest.fixture
def other_process(app):
    """A connection of another process's kind: its own, outside this process's writer lock."""
    other = sqlite3.connect(app.config["DATABASE"], isolation_level=None, timeout=5)
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def notices() -> list[OutboundEmail]:
    with connection():
        return list(OutboundEmail.select().where(OutboundEmail.subject == NOTICE)
                    .order_by(OutboundEmail.to))


def test_a_write_inside_a_loop_over_a_query_goes_through_while_another_process_commits(app, user, agent, other_process):
    # While a query was still being read, another process committed; the loop's write then
    # had to upgrade a read whose snapshot was stale, and SQLite refused it at once.
    with app.app_context(), connection():
        seen = []
        for member in User.select().order_by(User.id):
            # Another process commits meanwhile (a change: SQLite writes nothing for none).
            other_process.execute("UPDATE workspace SET name = name || '.'")
            User.update(name=member.name + " (checked)").where(User.id == member.id).execute()
            seen.append(member.id)
        assert [u.name for u in User.select().order_by(User.id)] == [
            "Olive Owner (checked)", "Andy Agent (checked)"]
    assert len(seen) == 2


def test_a_task_that_meets_a_locked_database_runs_again_later(app, conversation, agent,
                                                               other_process):
    with app.app_context(), connection():
        # Another process holds the write lock past this connection's (shortened) patience.
        database.execute_sql("PRAGMA busy_timeout = 50")
        other_process.execute("BEGIN IMMEDIATE")
        send_away_notice(conversation.id)
        other_process.execute("ROLLBACK")
        database.execute_sql("PRAGMA busy_timeout = 5000")

        # Nothing half done, and the task is waiting in the queue instead of dropped.
        conv = Conversation.get_by_id(conversation.id)
        assert conv.away_notice_at is None and notices() == []
        (again,) = huey.scheduled()
        assert (again.name, again.args) == ("send_away_notice", (conversation.id,))

        # Its time comes (what the consumer's scheduler does), and it runs.
        (due,) = huey.read_schedule(again.eta)
        huey.execute(due, due.eta)
        conv = Conversation.get_by_id(conversation.id)
    assert conv.away_notice_at is not None and not conv.away_pending
    assert [e.to for e in notices()] == ["agent@example.com", "owner@example.com"]
    assert huey.scheduled() == []


def test_an_away_notice_is_marked_sent_only_with_its_emails(app, conversation, agent):
    with app.app_context(), connection():
        Conversation.update(away_pending=True).where(Conversation.id == conversation.id).execute()
        # The outbox refuses the e-mails (on this connection only): as if the process died,
        # or the disk filled, between marking the notice sent and storing its e-mails.
        database.execute_sql(
            "CREATE TEMP TRIGGER outbox_refuses BEFORE INSERT ON outbound_email "
            "BEGIN SELECT RAISE(ABORT, 'the outbox is full'); END")
        send_away_notice(conversation.id)
        conv = Conversation.get_by_id(conversation.id)
        assert (conv.away_notice_at, conv.away_pending, notices()) == (None, True, [])

        # Once e-mails can be stored again, the next notice carries the message: once, to each.
        database.execute_sql("DROP TRIGGER outbox_refuses")
        send_away_notice(conversation.id)
        conv = Conversation.get_by_id(conversation.id)
        members = Membership.select().where(Membership.workspace == conv.workspace_id).count()
    assert conv.away_notice_at is not None and not conv.away_pending
    assert len(notices()) == members == 2
    assert all("do you ship to Iceland?" in e.text_body for e in notices())
