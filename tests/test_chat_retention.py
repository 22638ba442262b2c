"""Retention: conversations idle longer than their site keeps them are deleted with every
trace, in batches; short-lived typing/read events and stale presence rows are swept too."""

import threading
import time
from datetime import timedelta

import pytest

from app.chat import retention
from app.chat.models import Attachment, ChatEvent, Conversation, Message, Presence
from app.db import connection, database, utcnow
from app.widget.models import Visitor
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    WidgetVisitor,
    count,
    fts_hits,
    make_site,
    online_fixture,
    png_bytes,
    site_fixture,
    ws_fixture,
)


def conversation_with(app, site, body, idle_days, file=None) -> int:
    """A conversation (message, attachment, events) whose last activity was `idle_days` ago."""
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send(body, file=file).status_code == 200
    conv_id = guest.conversation().id
    with connection():
        Conversation.update(last_activity_at=utcnow() - timedelta(days=idle_days)).where(
            Conversation.id == conv_id).execute()
    return conv_id


def test_conversations_past_their_sites_retention_are_deleted_with_every_trace(app, ws, online):
    month = make_site(app, ws, name="Month", retention_days=30)
    year = make_site(app, ws, name="Year", origins="https://year.example.com", retention_days=365)
    old = conversation_with(app, month, "expired zebra words", 31,
                            file=(png_bytes(), "old.png", "image/png"))
    young = conversation_with(app, month, "recent giraffe words", 29)
    old_but_kept = conversation_with(app, year, "kept okapi words", 31)
    assert len(fts_hits("zebra")) == 1  # indexed: the purge must take it out of the index

    assert retention.purge_expired() == 1

    with connection():
        assert [c.id for c in Conversation.select().order_by(Conversation.id)] == [
            young, old_but_kept]
        assert Message.select().where(Message.conversation == old).count() == 0
        # Only a bare "deleted" marker stays, so open views drop the conversation live.
        assert [e.kind for e in ChatEvent.select().where(ChatEvent.conversation_id == old)] == ["deleted"]
        assert Attachment.select().count() == 0
        assert Message.select().count() == 2
    assert fts_hits("zebra") == []
    assert len(fts_hits("giraffe")) == 1


def test_purge_uses_the_given_moment(app, ws, site, online):
    conversation_with(app, site, "hello", 0)  # site keeps 180 days
    assert retention.purge_expired(now=utcnow() + timedelta(days=179)) == 0
    assert retention.purge_expired(now=utcnow() + timedelta(days=181)) == 1
    assert count(Conversation) == 0


def test_purge_deletes_more_than_one_batch(app, ws, online):
    site = make_site(app, ws, name="Busy", retention_days=10)
    n = retention.CONVERSATIONS * 2 + 5
    old = utcnow() - timedelta(days=11)
    with connection(), database.atomic():
        Visitor.insert_many(
            [{"site": site.id, "public_id": f"bulk-{i}"} for i in range(n + 1)]).execute()
        visitor_ids = [v.id for v in Visitor.select(Visitor.id).order_by(Visitor.id)]
        Conversation.insert_many([
            {"workspace": ws, "site": site.id, "visitor": vid, "last_activity_at": old}
            for vid in visitor_ids[:n]]).execute()
        Conversation.insert(workspace=ws, site=site.id, visitor=visitor_ids[n],
                            last_activity_at=utcnow()).execute()
        conv_ids = [c.id for c in Conversation.select(Conversation.id).order_by(Conversation.id)]
        Message.insert_many([
            {"conversation": cid, "workspace_id": ws, "sender": "visitor", "body": f"bulk {cid}"}
            for cid in conv_ids]).execute()
        ChatEvent.insert_many([
            {"workspace_id": ws, "conversation_id": cid, "kind": "message", "seq": 1000 + seq}
            for seq, cid in enumerate(conv_ids)]).execute()

    assert retention.purge_expired() == n
    assert count(Conversation) == 1
    assert count(Message) == 1
    # the kept conversation's event, plus one bare "deleted" marker per purged conversation
    assert count(ChatEvent) == 1 + n
    assert count(ChatEvent, ChatEvent.kind == "deleted") == n
    assert len(fts_hits("bulk")) == 1


def test_a_long_conversation_loses_its_messages_a_chunk_at_a_time_then_goes(app, ws, site, online,
                                                                             monkeypatch):
    """More than LONG messages: they go in statements of pace.chunk (46 here, 20 a statement)
    before the conversation itself, and none is left behind, in the table or the index."""
    monkeypatch.setattr(retention, "LONG", 5)
    long_one = conversation_with(app, site, "first walrus line", 0)
    short_one = conversation_with(app, site, "lone walrus line", 0)
    with connection(), database.atomic():
        Message.insert_many([{"conversation": long_one, "workspace_id": ws, "sender": "visitor",
                              "body": f"walrus {i}"} for i in range(45)]).execute()
    from app.chat import service
    with connection():
        while service.index_new_messages():
            pass
    assert len(fts_hits("walrus")) == 47
    assert retention.purge_expired(now=utcnow() + timedelta(days=181)) == 2
    assert count(Conversation) == 0 and count(Message) == 0
    assert fts_hits("walrus") == []
    assert count(ChatEvent, ChatEvent.conversation_id.in_([long_one, short_one])
                 & (ChatEvent.kind != "deleted")) == 0


def test_nightly_job_runs_the_purge(app, ws, site, online):
    from jobs.chat import purge_old_conversations

    conversation_with(app, site, "ancient", 400)
    with app.app_context():
        purge_old_conversations.call_local()
    assert count(Conversation) == 0


def test_stale_typing_and_read_events_and_presence_rows_are_swept(app, ws, site, online):
    conv = conversation_with(app, site, "hello", 0)
    now = utcnow()
    stale, fresh = now - timedelta(days=2), now - timedelta(hours=1)
    with connection(), database.atomic():
        ChatEvent.delete().execute()
        ChatEvent.insert_many(
            [{"workspace_id": ws, "conversation_id": conv, "kind": kind, "created_at": at,
              "seq": 1000 + seq}
             for seq, (kind, at) in enumerate((kind, at) for kind in ("typing", "read")
                                              for at in [stale] * 600)]).execute()
        ChatEvent.insert_many(
            [{"workspace_id": ws, "conversation_id": conv, "kind": kind, "created_at": at,
              "seq": 5000 + seq}
             for seq, (kind, at) in enumerate([
                 ("typing", fresh), ("read", fresh), ("message", stale), ("status", stale),
                 ("deleted", stale), ("visitor", stale)])]).execute()
        Presence.delete().execute()
        Presence.insert_many([
            {"kind": "agent", "workspace_id": ws, "subject_id": 1, "stream_id": "gone",
             "seen_at": now - timedelta(minutes=6)},
            {"kind": "visitor", "workspace_id": ws, "subject_id": conv, "stream_id": "here",
             "seen_at": now - timedelta(seconds=10)},
        ]).execute()

    assert retention.purge_stale_events(now=now) == 1200

    with connection():
        left = sorted((e.kind, e.created_at == fresh) for e in ChatEvent.select())
        assert left == [("deleted", False), ("message", False), ("read", True),
                        ("status", False), ("typing", True), ("visitor", False)]
        assert [p.stream_id for p in Presence.select()] == ["here"]


def test_purge_removes_visitors_left_with_nothing_and_unseen_for_the_window(app):
    from datetime import timedelta

    from app.accounts.models import Workspace
    from app.chat import retention
    from app.db import connection, utcnow
    from app.widget.models import Site, Visitor

    with app.app_context(), connection():
        ws = Workspace.create(name="W")
        site = Site.create(workspace=ws, name="S", allowed_origins="https://a.example", retention_days=30)
        old = Visitor.create(site=site, email="gone@example.com", last_seen_at=utcnow() - timedelta(days=31))
        recent = Visitor.create(site=site, email="kept@example.com", last_seen_at=utcnow() - timedelta(days=2))
        retention.purge_expired()
        assert Visitor.get_or_none(Visitor.id == old.id) is None
        assert Visitor.get_or_none(Visitor.id == recent.id) is not None


def test_purged_conversations_leave_a_deleted_event_so_open_views_drop_them(app):
    from datetime import timedelta

    from app.accounts.models import Workspace
    from app.chat import retention
    from app.chat.models import ChatEvent, Conversation
    from app.db import connection, utcnow
    from app.widget.models import Site, Visitor

    with app.app_context(), connection():
        ws = Workspace.create(name="W")
        site = Site.create(workspace=ws, name="S", allowed_origins="https://a.example", retention_days=30)
        visitor = Visitor.create(site=site)
        old = Conversation.create(workspace=ws, site=site, visitor=visitor,
                                  last_activity_at=utcnow() - timedelta(days=40))
        retention.purge_expired()
        events = list(ChatEvent.select().where(ChatEvent.conversation_id == old.id))
        assert [(e.kind, e.actor) for e in events] == [(ChatEvent.DELETED, "retention")]


def test_the_purge_leaves_the_search_index_with_nothing_left_to_merge(app, ws, site, online,
                                                                      monkeypatch):
    """Each purge transaction leaves tombstones in new index segments; were they left to pile
    up, FTS5 would merge 16 of them inside one of the purge's deletes, holding the chat's write
    lock for 100 ms and more. The purge merges after each transaction until FTS5 finds nothing
    to merge, so it ends with none, and what is kept is still found."""
    from app.chat import service

    monkeypatch.setattr(retention, "CONVERSATIONS", 2)  # many short transactions
    monkeypatch.setattr(retention, "SEARCH_MERGE_PAGES", 1)  # small steps: many of them needed
    guests = [WidgetVisitor.arrive(app, site.site_key) for _ in range(40)]
    for round_ in range(3):  # interleaved message ids, as live chat writes them
        for i, guest in enumerate(guests):
            word = "heron" if i % 2 else "egret"
            assert guest.send(f"{word} {i} round {round_}").status_code == 200
    with connection():
        while service.index_new_messages():
            pass
        while service.merge_search_index():
            pass
        old = [g.conversation().id for i, g in enumerate(guests) if i % 2]
        Conversation.update(last_activity_at=utcnow() - timedelta(days=181)).where(
            Conversation.id.in_(old)).execute()

    assert retention.purge_expired() == 20

    with connection():
        assert service.merge_search_index() == 0
    assert fts_hits("heron") == []
    assert len(fts_hits("egret")) == 60


def test_each_purged_conversations_notice_names_that_conversation_and_only_it(app, ws, site, online):
    """A purge's notices are rendered once a pass with the id put in: in one pass, each names
    its own conversation (row and open pane), and a visitor's own deletion keeps its words."""
    from app.chat import render
    from tests.test_chat_streams import sse_html

    ids = [conversation_with(app, site, f"owl {i}", 400) for i in range(3)]
    assert retention.purge_expired() == 3
    with connection():
        rows = list(ChatEvent.select().where(ChatEvent.kind == ChatEvent.DELETED)
                    .order_by(ChatEvent.seq))
    by_visitor = ChatEvent(workspace_id=ws, conversation_id=99999, kind=ChatEvent.DELETED,
                           seq=rows[-1].seq + 1, actor="visitor")
    out = render.Renderer(app).events([(row, ("agent",)) for row in [*rows, by_visitor]])
    notices = [sse_html(sse["agent"]) for sse in out]
    for conv_id, notice in zip([*ids, 99999], notices, strict=True):
        assert f'id="conv-{conv_id}"' in notice and f'id="conversation-{conv_id}"' in notice
        others = [i for i in [*ids, 99999] if i != conv_id]
        assert not any(f"-{i}\"" in notice for i in others)
    assert "This conversation was deleted." in notices[0]
    assert "The visitor deleted this conversation." in notices[-1]


def test_the_purge_tells_its_deletions_in_runs_not_with_every_transaction(app, ws, site, online,
                                                                          monkeypatch):
    """A chat message numbered after a purge event waits until the web process has read it
    back: the purge records its "deleted" events in runs (NOTICE_EVERY), here all at the end,
    one run, numbered one after the other."""
    monkeypatch.setattr(retention, "CONVERSATIONS", 2)  # three transactions of deletions
    monkeypatch.setattr(retention, "NOTICE_EVERY", 3600)
    ids = [conversation_with(app, site, f"ibis {i}", 400) for i in range(6)]
    assert retention.purge_expired() == 6
    with connection():
        rows = list(ChatEvent.select().where(ChatEvent.kind == ChatEvent.DELETED)
                    .order_by(ChatEvent.seq))
    assert sorted(r.conversation_id for r in rows) == sorted(ids)
    assert len({r.created_at for r in rows}) == 1  # one record: one moment
    assert [r.seq for r in rows] == list(range(rows[0].seq, rows[0].seq + 6))

    monkeypatch.setattr(retention, "NOTICE_EVERY", 0)  # with every transaction
    [conversation_with(app, site, f"stork {i}", 400) for i in range(6)]
    assert retention.purge_expired() == 6
    with connection():
        later = {r.created_at for r in ChatEvent.select().where(
            (ChatEvent.kind == ChatEvent.DELETED) & (ChatEvent.seq > rows[-1].seq))}
    assert len(later) == 3


@pytest.mark.sqlite_only("SQLite's one write lock, shared through the write-intent file")
def test_after_each_transaction_the_purge_rests_until_the_chat_has_been_quiet(app):
    """Pace: after a commit the purge sleeps until no chat write has been announced for
    `quiet` seconds; a chat that never pauses still lets it on after `patience`."""
    from app.db import Pace, write_intent

    with app.app_context(), connection():
        pace = Pace(rest=0, min_rest=0, quiet=0.05, patience=0.3)
        intent = write_intent()
        with pace.transaction():
            intent.announce()  # a chat message on its way as the transaction ends
            announced = time.time()
        assert time.time() - announced >= pace.quiet

        stop = threading.Event()

        def busy_chat():
            while not stop.is_set():
                intent.announce()
                time.sleep(0.001)

        chat = threading.Thread(target=busy_chat)
        chat.start()
        try:
            began = time.monotonic()
            with pace.transaction():
                pass
            waited = time.monotonic() - began
        finally:
            stop.set()
            chat.join()
        assert waited >= pace.patience


# A statement that keeps SQLite busy for a while (a few tenths of a second), read-only.
LONG_STATEMENT = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                  "WHERE x < 1000000) SELECT count(*) FROM c")


def _other_process_writer(path):
    """A connection as another process's chat writer has: it never waits inside SQLite (busy
    timeout 0) and asks again shortly while the write lock is held."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)

    def write(sql):
        give_up = time.monotonic() + 10
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError:
                assert time.monotonic() < give_up, "the write lock never came free"
                time.sleep(0.0005)
        conn.execute(sql)
        conn.execute("COMMIT")
    return conn, write


@pytest.mark.sqlite_only("SQLite's one write lock, shared through the write-intent file")
def test_a_chat_write_announced_mid_statement_preempts_the_purge_which_does_its_step_again(app):
    """A chat write does not wait for the purge's statement in progress: announced while it
    runs, it stops it, the purge's transaction is undone (nothing of it stays) and the chat
    writes; the purge does the same step again afterwards and sees the chat's row."""
    from app.db import Pace, write_intent

    with app.app_context(), connection():
        database.execute_sql("CREATE TABLE preempt_probe (who TEXT)")
        database.execute_sql("PRAGMA busy_timeout = 12345")  # a task's patience
        pace = Pace(rest=0, min_rest=0, quiet=0.5, patience=5)
        started, attempts = threading.Event(), []
        conn, write = _other_process_writer(database.obj.database)

        def chat():
            started.wait(10)
            write_intent().announce()
            write("INSERT INTO preempt_probe VALUES ('chat')")

        def step():
            attempts.append(1)
            database.execute_sql("INSERT INTO preempt_probe VALUES ('purge')")
            started.set()
            # In a savepoint, as the search index's merge is, and a write: SQLite then ends the
            # whole transaction itself when it stops the statement.
            with database.atomic():
                database.execute_sql(f"INSERT INTO preempt_probe SELECT 'never' "
                                     f"FROM ({LONG_STATEMENT}) AS n WHERE n.\"count(*)\" < 0")
            return [who for (who,) in database.execute_sql("SELECT who FROM preempt_probe ORDER BY rowid")]

        writer = threading.Thread(target=chat)
        writer.start()
        try:
            seen = pace.run(step)
        finally:
            writer.join()
            conn.close()
        assert len(attempts) == 2 and pace.preempted == 1 and pace.transactions == 1
        assert seen == ["chat", "purge"]  # the undone attempt's row is not there
        assert not database.connection().in_transaction
        # Opened afresh after the undone transaction, and as patient as before.
        assert database.execute_sql("PRAGMA busy_timeout").fetchone() == (12345,)


@pytest.mark.sqlite_only("SQLite's one write lock, shared through the write-intent file")
def test_a_chat_write_announced_between_two_statements_commits_what_was_done(app):
    """A chat write announced while the purge is between statements (peewee building the next
    one, most of a short statement's time) does not undo the statements already run: the
    next one is not started, the transaction commits, the chat writes. Only the first
    statement of a transaction always starts (so a chat that never pauses cannot stop it)."""
    from peewee import Table

    from app.db import Pace, write_intent

    with app.app_context(), connection():
        database.execute_sql("CREATE TABLE between_probe (who TEXT)")
        probe = Table("between_probe", ("who",)).bind(database)
        pace = Pace(rest=0, min_rest=0, quiet=0.001, patience=0.01, longest=60)
        intent = write_intent()
        ran = []

        def step():
            intent.announce()  # already announced: the first statement still starts
            ran.append(pace.execute(probe.insert(who="first")) is not None)
            intent.announce()  # the chat is coming while the purge is between statements
            ran.append(pace.execute(probe.insert(who="second")) is not None)
            return True

        assert pace.run(step) is True
        assert ran == [True, False]
        assert pace.preempted == 0 and pace.transactions == 1
        assert [who for (who,) in database.execute_sql("SELECT who FROM between_probe")] == ["first"]
        assert not database.connection().in_transaction


@pytest.mark.sqlite_only("SQLite's one write lock, shared through the write-intent file")
def test_a_chat_that_never_pauses_cannot_hold_the_purge_back_for_ever(app):
    """Preempted PREEMPTED_IN_A_ROW times in a row, the same step then goes on to its end."""
    from app import db
    from app.db import Pace, write_intent

    with app.app_context(), connection():
        pace = Pace(rest=0, min_rest=0, quiet=0.001, patience=0.01)
        intent, stop, attempts = write_intent(), threading.Event(), []

        def busy_chat():
            while not stop.is_set():
                intent.announce()
                time.sleep(0.001)

        def step():
            attempts.append(1)
            # Rows read one by one: the statement is stopped inside a read of its cursor.
            return sum(1 for _ in database.execute_sql(LONG_STATEMENT.replace("count(*)", "x")))

        chat = threading.Thread(target=busy_chat)
        chat.start()
        try:
            assert pace.run(step) == 1000000
        finally:
            stop.set()
            chat.join()
        assert pace.preempted == db.PREEMPTED_IN_A_ROW
        assert len(attempts) == db.PREEMPTED_IN_A_ROW + 1


@pytest.mark.sqlite_only("SQLite's one write lock, shared through the write-intent file")
def test_a_preempted_purge_deletes_and_tells_each_conversation_once(app, ws, site, online,
                                                                    monkeypatch):
    """Transactions undone for chat writes are done again: every expired conversation goes,
    with exactly one "deleted" event each, however often the chat cut in (here: a chat write
    announced by every message the purge deletes, so every transaction that deletes one is
    undone PREEMPTED_IN_A_ROW times before it goes through)."""
    from app import db
    from app.db import Pace, write_intent

    paces = []

    class Watched(Pace):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            paces.append(self)

    monkeypatch.setattr(retention, "Pace", Watched)
    monkeypatch.setattr(db, "PROGRESS_STEPS", 1)
    monkeypatch.setattr(retention, "NOTICE_EVERY", 0)  # a run with every transaction
    monkeypatch.setattr(retention, "CONVERSATIONS", 2)
    ids = [conversation_with(app, site, f"heron {i}", 400) for i in range(8)]
    with app.app_context(), connection():
        intent = write_intent()
        # On every connection: the purge opens a new one after each undone transaction.
        database.obj.register_function(lambda: intent.announce(), "chat_announces", 0)
        database.close()
        database.connect()
        database.execute_sql("CREATE TRIGGER chat_cuts_in AFTER DELETE ON message "
                             "BEGIN SELECT chat_announces(); END")
        assert retention.purge_expired() == 8
        # Each transaction that goes through commits after one conversation (a chat write was
        # announced meanwhile): eight of them, each undone three times first.
        assert sum(p.preempted for p in paces) == 8 * db.PREEMPTED_IN_A_ROW
        assert not Conversation.select().where(Conversation.id.in_(ids)).exists()
        told = [r.conversation_id for r in ChatEvent.select().where(ChatEvent.kind == ChatEvent.DELETED)]
    assert sorted(told) == sorted(ids)
