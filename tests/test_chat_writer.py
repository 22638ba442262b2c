"""The chat's one writer (app/chat/writer.py): the writes that queue up together are committed
together, a job that fails undoes only its own writes, a batch whose commit fails stores,
publishes and queues nothing and tells every sender, and the events of a batch reach the
streams once, in order, before their senders' answers."""

import asyncio
import sqlite3

import pytest

from app.chat import service
from app.chat.live import AGENT
from app.chat.models import Conversation, Message
from app.chat.writer import Writer
from app.db import connection, database, dialect, utcnow
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    WidgetVisitor,
    online_fixture,
    run_async,
    site_fixture,
    ws_fixture,
)
from tests.test_chat_streams import follow, running_hub, sse_html, take


def started(app, site):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("first").status_code == 200
    return guest.conversation()


def post(conversation_id, body, client_id=""):
    """A visitor's message as a writer job (the route's job does the same, rules included)."""
    conv = Conversation.get_by_id(conversation_id)
    return service.send_visitor_message(conv.site, conv.visitor, body, client_id=client_id).id


def bodies(conversation_id):
    with connection():
        return [m.body for m in Message.select().where(Message.conversation == conversation_id)
                .order_by(Message.id)]


def test_writes_queued_together_are_committed_in_one_transaction(app, ws, site, online):
    conv = started(app, site)
    writer = Writer(app)

    async def scenario():
        return await asyncio.gather(*(writer.run(post, conv.id, f"m{i}") for i in range(20)))

    ids = run_async(scenario())
    assert len(set(ids)) == 20
    assert bodies(conv.id) == ["first"] + [f"m{i}" for i in range(20)]
    assert writer.written == 20 and writer.batches < 20  # some waited for one commit together


def test_a_refused_job_changes_nothing_and_its_neighbours_are_stored(app, ws, site, online):
    conv = started(app, site)
    writer = Writer(app)

    def stored_then_refused():
        post(conv.id, "half-done")  # written, then the job fails: undone with it
        raise service.ChatError("no")

    async def scenario():
        return await asyncio.gather(writer.run(post, conv.id, "before"),
                                    writer.run(stored_then_refused),
                                    writer.run(post, conv.id, "after"), return_exceptions=True)

    before, refused, after = run_async(scenario())
    assert isinstance(refused, service.ChatError)
    assert isinstance(before, int) and isinstance(after, int)
    assert bodies(conv.id) == ["first", "before", "after"]


def test_a_batch_whose_commit_fails_stores_nothing_and_tells_every_sender(app, ws, site, online):
    conv = started(app, site)
    writer = Writer(app)

    def poisons_the_commit():
        # A check made only at COMMIT that fails: the job itself succeeds, the batch's commit
        # then fails. SQLite: foreign keys deferred, and a message of no conversation.
        # PostgreSQL: a constraint trigger deferred to the commit that refuses.
        if dialect() == "sqlite":
            database.execute_sql("PRAGMA defer_foreign_keys = ON")
            database.execute_sql(
                'INSERT INTO "message" ("conversation_id", "workspace_id", "sender", "body", '
                '"created_at", "over_limit", "client_id") VALUES (?, ?, ?, ?, ?, 0, ?)',
                (987654, ws, "visitor", "orphan", str(utcnow()), ""))
        else:
            for statement in (
                    "CREATE TEMP TABLE poison (x int) ON COMMIT DROP",
                    "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$",
                    "CREATE CONSTRAINT TRIGGER poison_check AFTER INSERT ON poison "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()",
                    "INSERT INTO poison VALUES (1)"):
                database.execute_sql(statement)

    async def scenario():
        # Queued in one round of the loop: one batch.
        return await asyncio.gather(writer.run(post, conv.id, "lost 1"),
                                    writer.run(poisons_the_commit),
                                    writer.run(post, conv.id, "lost 2"), return_exceptions=True)

    answers = run_async(scenario())
    assert all(isinstance(a, Exception) for a in answers), answers
    assert bodies(conv.id) == ["first"]
    # The writer goes on: the next write is stored.
    assert isinstance(run_async(writer.run(post, conv.id, "later")), int)
    assert bodies(conv.id) == ["first", "later"]


def test_a_batchs_events_reach_the_streams_once_in_order_before_the_answers(app, ws, site, online):
    conv = started(app, site)

    async def scenario():
        async with running_hub(app) as hub:
            writer = Writer(app, hub)
            agents = follow(hub, ws)
            done = []

            async def one(i):
                await writer.run(post, conv.id, f"n{i}")
                done.append(agents.queue.qsize())  # delivered before this answer came back

            await asyncio.gather(*(one(i) for i in range(10)))
            got = await take(agents, 10)
            assert [e.seq for e in got] == list(range(got[0].seq, got[0].seq + 10))
            texts = [sse_html(e.sse[AGENT]) for e in got]
            assert all(any(f"n{i}<" in t for t in texts) for i in range(10))
            assert all(size >= 1 for size in done)
            assert all(hub.renders[(AGENT, ws, e.seq)] == 1 for e in got)
            assert hub.read_back == 0

    run_async(scenario())


@pytest.mark.sqlite_only("SQLite's one write lock; PostgreSQL's writers of different rows do "
                        "not wait for each other")
def test_a_write_lock_held_elsewhere_is_waited_for_without_stopping_the_loop(
        app, ws, site, online):
    conv = started(app, site)
    writer = Writer(app)
    other = sqlite3.connect(app.config["DATABASE"], isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process is writing

    async def scenario():
        write = asyncio.ensure_future(writer.run(post, conv.id, "patient"))
        ticks = 0
        for _ in range(20):  # the loop goes on serving: 20 rounds of 5 ms pass on time
            started_at = asyncio.get_running_loop().time()
            await asyncio.sleep(0.005)
            ticks += asyncio.get_running_loop().time() - started_at < 0.1
        assert not write.done()
        other.execute("COMMIT")
        return ticks, await asyncio.wait_for(write, 5)

    try:
        ticks, message_id = run_async(scenario())
    finally:
        other.close()
    assert ticks == 20 and isinstance(message_id, int)
    assert writer.waits > 0
    assert bodies(conv.id) == ["first", "patient"]
