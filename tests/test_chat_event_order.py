"""Events reach every stream exactly once and in order, however their transactions interleave:
each event's number in its workspace is taken as its transaction's last statement, so the
numbers follow commit order on both engines (app/chat/events.py). On PostgreSQL, other web
processes hear of a commit over Redis pub/sub, and without Redis they still find it."""

import asyncio
import sys
import threading
from pathlib import Path

import anyio
import pytest
import redis
from peewee import IntegrityError

from app.chat import events, live, service, streams, wakeups
from app.chat.models import ChatEvent, Conversation, Message
from app.db import connection, database, dialect
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    online_fixture,
    run_async,
    site_fixture,
    ws_fixture,
)
from tests.test_chat_streams import (
    WAIT,
    commit_elsewhere,
    database_of,
    follow,
    new_conversation,
    running_hub,
    take,
    visitor_message,
)

ROOT = Path(__file__).resolve().parents[1]


def test_two_commits_out_of_id_order_reach_a_stream_once_each_in_commit_order(
        app, ws, site, online):
    """A writes its message (taking the lower message id) and holds its transaction open; B
    writes and commits meanwhile, where the engine lets it (PostgreSQL: B commits first;
    SQLite's one write lock makes B wait for A). Numbered by the old rule (row ids), a stream
    that moved past B's event would never see A's. Every event arrives once, in commit order,
    and a replay from before both finds each once."""
    conv = new_conversation(app, site, "first")
    other = new_conversation(app, site, "second")
    with connection():
        before = streams.workspace_seq(ws)
    a_wrote, a_may_commit, b_done = threading.Event(), threading.Event(), threading.Event()
    ids = {}

    def writer_a():
        with app.app_context(), connection():
            conversation = Conversation.get_by_id(conv.id)
            collected = live.Collector()
            with database.atomic():
                # As inside the chat writer's batch: the event is numbered at the end.
                with live.collecting(collected):
                    ids["a"] = service.post_visitor_message(conversation.site,
                                                            conversation.visitor, "A").id
                a_wrote.set()
                a_may_commit.wait(WAIT)
                events.record(collected.written)  # last: the counter's row until the commit
            live.publish(collected.written)
            ids["a_seq"] = collected.written[0].seq

    def writer_b():
        # An agent's reply in another conversation of the workspace: no row of A's in common
        # (a visitor of the same site would wait for A's row of the site's monthly count).
        with app.app_context(), connection():
            conversation = Conversation.get_by_id(other.id)
            user = conversation.workspace.memberships[0].user
            ids["b"] = service.post_agent_reply(conversation, user, "B").id
        b_done.set()

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws)
            a = threading.Thread(target=writer_a)
            a.start()
            try:
                assert await anyio.to_thread.run_sync(a_wrote.wait, WAIT)
                b = threading.Thread(target=writer_b)
                b.start()
                if dialect() == "postgres":
                    # B's whole write commits while A's transaction is still open.
                    assert await anyio.to_thread.run_sync(b_done.wait, WAIT)
                    [first] = await take(sub, 1)
                    assert first.ref_id == ids["b"]
                else:
                    # SQLite: B waits for A's write lock; nothing of either is visible yet.
                    await asyncio.sleep(0.2)
                    assert not b_done.is_set() and sub.queue.empty()
            finally:
                a_may_commit.set()
                await anyio.to_thread.run_sync(a.join, WAIT)
            await anyio.to_thread.run_sync(b.join, WAIT)
            got = await take(sub, 2) if dialect() == "sqlite" else [first, *await take(sub, 1)]
            await asyncio.sleep(0.3)  # anything repeated would have arrived by now
            assert sub.queue.empty()
            return got

    got = run_async(scenario())
    assert ids["a"] < ids["b"]  # A took the lower message id ...
    order = [e.ref_id for e in got]
    # ... and its event comes in the order of the commits: after B's on PostgreSQL.
    assert order == ([ids["b"], ids["a"]] if dialect() == "postgres" else [ids["a"], ids["b"]])
    assert [e.seq for e in got] == [before + 1, before + 2]
    replayed = streams.replay(before, workspace_id=ws)
    assert sorted(r.ref_id for r in replayed) == sorted([ids["a"], ids["b"]])
    assert [r.seq for r in replayed] == [before + 1, before + 2]


def test_event_numbers_are_unique_in_a_workspace_and_gapless_after_a_rollback(app, ws, site,
                                                                              online):
    conv = new_conversation(app, site, "first")
    with connection():
        before = streams.workspace_seq(ws)
        with pytest.raises(RuntimeError), database.atomic():
            events.new(ws, conv.id, ChatEvent.TYPING, actor=Message.VISITOR)
            raise RuntimeError("undone")  # the number goes back with the transaction
        assert streams.workspace_seq(ws) == before
    visitor_message(app, conv.id, "kept")
    rows = streams.replay(0, workspace_id=ws)
    assert [r.seq for r in rows] == list(range(1, before + 2))
    with connection(), pytest.raises(IntegrityError), database.atomic():
        # The database itself refuses a second event with a number already given.
        ChatEvent.create(workspace_id=ws, conversation_id=conv.id, seq=before + 1,
                         kind=ChatEvent.TYPING)


@pytest.fixture
def slow_poll(monkeypatch):
    """Make the hub's poll of the counters too slow to matter, so that only a Redis wake-up
    can bring another process's event within the test's wait."""
    monkeypatch.setattr(live, "POLL_SECONDS", 60.0)
    monkeypatch.setattr(live, "SAFETY_POLL_SECONDS", 60.0)


def test_another_process_commit_is_heard_over_redis(app, ws, site, online, slow_poll):
    if dialect() != "postgres":
        pytest.skip("on SQLite, processes see each other's commits through the file itself")
    conv = new_conversation(app, site)

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws)
            with anyio.fail_after(WAIT):
                while not hub.pushed:  # subscribed to the channel
                    await asyncio.sleep(0.01)
            seq = await anyio.to_thread.run_sync(commit_elsewhere, app, ws, conv.id)
            # What the other process does after its commit (live.notify): one wake-up.
            client = redis.Redis.from_url(app.config["REDIS_URL"])
            try:
                client.publish(wakeups.CHANNEL, wakeups.encode([(ws, seq)], tag="elsewhere"))
            finally:
                client.close()
            [row] = await take(sub, 1)
            assert (row.seq, row.conversation_id) == (seq, conv.id)
            assert hub.read_back == 1

    run_async(scenario())


RING_FROM_ANOTHER_PROCESS = """
import sys
from app.chat import live, wakeups
wakeups.configure(None, sys.argv[1])
live.told(int(sys.argv[2]), int(sys.argv[3]))
live.notify()
"""


def test_on_sqlite_another_process_commit_rings_the_web_process_doorbell(app, ws, site, online,
                                                                         monkeypatch):
    """A worker's event (a purge's deletions, an e-mailed reply) reaches the streams when the
    worker rings after its commit (live.notify, in a process of its own), not at the next poll
    of data_version: the poll is made too slow to matter here."""
    if dialect() != "sqlite":
        pytest.skip("PostgreSQL set-ups wake each other over Redis")
    conv = new_conversation(app, site)
    monkeypatch.setattr(live, "WATCH_INTERVAL", 60.0)
    monkeypatch.setattr(live, "IDLE_INTERVAL", 60.0)

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws)
            await asyncio.sleep(0.2)  # the dispatcher's first look is behind it: next in 60 s
            seq = await anyio.to_thread.run_sync(commit_elsewhere, app, ws, conv.id)
            worker = await anyio.run_process(
                [sys.executable, "-c", RING_FROM_ANOTHER_PROCESS, database_of(app), str(ws),
                 str(seq)], cwd=ROOT, check=True)
            assert worker.returncode == 0
            [row] = await take(sub, 1)
            assert (row.seq, row.conversation_id) == (seq, conv.id)
            assert hub.read_back == 1

    run_async(scenario())


def test_a_doorbell_nobody_listens_to_costs_nothing(app, ws, site, online):
    """No web process running: the worker's ring goes nowhere, raising nothing."""
    if dialect() != "sqlite":
        pytest.skip("PostgreSQL set-ups wake each other over Redis")
    conv = new_conversation(app, site)
    seq = commit_elsewhere(app, ws, conv.id)
    wakeups.announce([(ws, seq)])


def test_without_redis_another_process_commit_is_found_by_the_poll(app, ws, site, online,
                                                                   monkeypatch):
    """Redis gone (here: never there): streams poll the counters and lose nothing."""
    if dialect() != "postgres":
        pytest.skip("on SQLite, processes see each other's commits through the file itself")
    conv = new_conversation(app, site)
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens
    monkeypatch.setattr(live, "POLL_SECONDS", 0.2)

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws)
            seqs = [await anyio.to_thread.run_sync(commit_elsewhere, app, ws, conv.id)
                    for _ in range(3)]
            got = await take(sub, 3)
            assert [row.seq for row in got] == seqs
            assert not hub.pushed

    run_async(scenario())


def test_the_dispatcher_reconnects_when_its_database_connection_is_cut(app, ws, site, online,
                                                                     slow_poll):
    """PostgreSQL restarting, a proxy dropping idle connections: the watcher's connection is
    cut under it; the hub connects again and delivers what was committed meanwhile."""
    if dialect() != "postgres":
        pytest.skip("a SQLite file has no connection to cut")
    import psycopg

    conv = new_conversation(app, site)

    def cut_the_watcher() -> int:
        with psycopg.connect(app.config["DATABASE_URL"], autocommit=True) as admin:
            # This test's database only: the browser tests' server may watch another.
            return len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE application_name = %s AND datname = current_database()",
                                     (live.WATCH_NAME,)).fetchall())

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws)
            with anyio.fail_after(WAIT):
                # Subscribed to Redis and connected to the database: the two happen in
                # different threads, in either order (one CI run cut before the watcher was).
                while not (hub.pushed and hub.watch_open is not None):
                    await asyncio.sleep(0.01)
            assert await anyio.to_thread.run_sync(cut_the_watcher) == 1
            seq = await anyio.to_thread.run_sync(commit_elsewhere, app, ws, conv.id)
            client = redis.Redis.from_url(app.config["REDIS_URL"])
            try:  # the wake-up arrives; the cut connection fails the read; the hub reconnects
                client.publish(wakeups.CHANNEL, wakeups.encode([(ws, seq)], tag="elsewhere"))
            finally:
                client.close()
            [row] = await take(sub, 1)
            assert row.seq == seq

    run_async(scenario())


def test_a_hub_stopped_while_its_watcher_connects_leaves_no_connection_open(app, ws):
    """A server stopping right after it started (a worker recycled, a test): the watcher is
    opened in a worker thread the stopping hub abandons; that thread closes what it opened."""

    def watchers_open() -> int:
        if dialect() != "postgres":
            return 0  # the count below is PostgreSQL's; on SQLite the hub's own record serves
        import psycopg
        with psycopg.connect(app.config["DATABASE_URL"], autocommit=True) as admin:
            return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                 "application_name = %s AND datname = current_database()",
                                 (live.WATCH_NAME,)).fetchone()[0]

    async def scenario():
        hubs = []
        for _ in range(5):
            hub = live.Hub(database_of(app), streams.fetch_after)
            await hub.start()
            await hub.stop()  # before (or while) the dispatcher's thread connects
            hubs.append(hub)
        with anyio.fail_after(WAIT):  # the abandoned threads finish connecting
            while await anyio.to_thread.run_sync(watchers_open):
                await asyncio.sleep(0.05)
        assert all(hub.watch_open is None and hub.stopped for hub in hubs)

    run_async(scenario())
