"""The live side of chat, below HTTP: the per-process Hub that fans chat events out to
streams, the replay a reconnecting browser gets, and the HTML each event becomes."""

import asyncio
import re
import sqlite3

import anyio
import pytest

from app.chat import events, live, render, service, streams
from app.chat.live import AGENT, VISITOR
from app.chat.models import ChatEvent, Conversation, Message, Presence
from app.db import connection
from app.widget import service as widget_service
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    WidgetVisitor,
    online_fixture,
    rival_fixture,
    run_async,
    site_fixture,
    ws_fixture,
)

WAIT = 5  # seconds: an upper bound for something that normally takes milliseconds


def new_conversation(app, site, body="Hello") -> Conversation:
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send(body).status_code == 200
    return guest.conversation()


def in_app(app, fn, *args):
    """Run a service call as a web request would: app context and its own connection."""
    with app.app_context(), connection():
        return fn(*args)


def visitor_message(app, conversation_id, body):
    def post():
        conv = Conversation.get_by_id(conversation_id)
        return service.post_visitor_message(conv.site, conv.visitor, body).id
    return in_app(app, post)


def typing(app, conversation_id, actor):
    in_app(app, lambda: service.typing(Conversation.get_by_id(conversation_id), actor))


def database_of(app) -> str:
    return app.config.get("DATABASE_URL") or app.config["DATABASE"]


class running_hub:
    """A started Hub, installed as this process's dispatcher, stopped on exit."""

    def __init__(self, app):
        self.hub = live.Hub(database_of(app), streams.fetch_after,
                            presence=streams.write_presence,
                            render=render.Renderer(app).events,
                            redis_url=app.config.get("REDIS_URL"))

    async def __aenter__(self):
        await self.hub.start()
        live.install(self.hub)
        return self.hub

    async def __aexit__(self, *exc):
        live.uninstall()
        await self.hub.stop()


async def eventually(check):
    """Wait (at most WAIT) until check(), run in a thread, is true."""
    with anyio.fail_after(WAIT):
        while not await anyio.to_thread.run_sync(check):
            await asyncio.sleep(0.02)


def follow(hub, workspace_id, conversation_id=None):
    """Subscribe as a stream does (streams.admit): the hub follows the workspace from its
    counter as it stands now."""
    sub = hub.subscribe(workspace_id, conversation_id=conversation_id)
    if not sub.known:
        with connection():
            hub.begin(workspace_id, streams.workspace_seq(workspace_id))
    return sub


def commit_elsewhere(app, workspace_id, conversation_id, kind="status") -> int:
    """An event committed by another process (the Huey worker, a second web process): a
    connection of its own, the event numbered as app/chat/events.py does, and no notify()."""
    url = app.config.get("DATABASE_URL")
    if url:
        import psycopg

        db, mark = psycopg.connect(url), "%s"
    else:
        db, mark = sqlite3.connect(app.config["DATABASE"]), "?"
    try:
        with db:
            (seq,) = db.execute(events.NEXT.replace("?", mark), (workspace_id, 1)).fetchone()
            db.execute("INSERT INTO chat_event (workspace_id, conversation_id, seq, kind, ref_id,"
                       f" actor, created_at) VALUES ({mark}, {mark}, {mark}, {mark}, 0, '',"
                       " CURRENT_TIMESTAMP)".replace("?", mark),
                       (workspace_id, conversation_id, seq, kind))
        return seq
    finally:
        db.close()


async def take(sub, n):
    return [await asyncio.wait_for(sub.queue.get(), WAIT) for _ in range(n)]


# --- the hub ---------------------------------------------------------------------------------------


def test_subscriber_receives_exactly_its_conversations_events_in_order(app, ws, site, online,
                                                                      rival):
    mine = new_conversation(app, site, "first")
    other = new_conversation(app, site, "second")
    theirs = rival["conversation"]

    async def scenario():
        async with running_hub(app) as hub:
            conv_sub = follow(hub, ws, mine.id)
            ws_sub = follow(hub, ws)
            rival_sub = follow(hub, rival["ws"])

            def write():
                ids = [visitor_message(app, mine.id, "one")]
                visitor_message(app, other.id, "not for the conversation stream")
                visitor_message(app, theirs.id, "another workspace")
                typing(app, mine.id, Message.AGENT)
                ids.append(visitor_message(app, mine.id, "two"))
                return ids

            message_ids = await anyio.to_thread.run_sync(write)
            got = await take(conv_sub, 3)
            assert [(r.kind, r.ref_id) for r in got] == [
                ("message", message_ids[0]), ("typing", 0), ("message", message_ids[1])]
            assert [r.conversation_id for r in got] == [mine.id] * 3
            assert conv_sub.queue.empty()  # the other rows came earlier: none of them queued

            workspace_rows = await take(ws_sub, 4)
            assert [r.conversation_id for r in workspace_rows] == [mine.id, other.id, mine.id,
                                                                   mine.id]
            assert ws_sub.queue.empty()
            [rival_row] = await take(rival_sub, 1)
            assert rival_row.conversation_id == theirs.id
            assert rival_sub.queue.empty()
            numbers = [r.seq for r in workspace_rows]
            assert numbers == list(range(numbers[0], numbers[0] + 4))  # in order, no gaps

    run_async(scenario())


def test_hub_skips_events_from_before_it_started(app, ws, site, online):
    conv = new_conversation(app, site)

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws, conv.id)
            await anyio.to_thread.run_sync(typing, app, conv.id, Message.VISITOR)
            [row] = await take(sub, 1)
            assert row.kind == ChatEvent.TYPING  # not the older message event

    run_async(scenario())


def test_hub_notices_a_commit_by_another_connection_without_notify(app, ws, site, online):
    conv = new_conversation(app, site)

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws)
            seq = await anyio.to_thread.run_sync(commit_elsewhere, app, ws, conv.id)
            [row] = await take(sub, 1)
            assert (row.seq, row.kind, row.conversation_id) == (seq, "status", conv.id)

    run_async(scenario())


def test_hub_notices_the_service_writing_from_another_thread(app, ws, site, online):
    conv = new_conversation(app, site)

    async def scenario():
        async with running_hub(app) as hub:
            sub = follow(hub, ws, conv.id)
            live.uninstall()  # so the service's notify() wakes nobody: only data_version tells
            message_id = await anyio.to_thread.run_sync(visitor_message, app, conv.id, "quiet")
            [row] = await take(sub, 1)
            assert (row.kind, row.ref_id) == ("message", message_id)

    run_async(scenario())


def test_unsubscribed_streams_get_nothing_more(app, ws, site, online):
    conv = new_conversation(app, site)

    async def scenario():
        async with running_hub(app) as hub:
            gone = follow(hub, ws, conv.id)
            stays = follow(hub, ws, conv.id)
            hub.unsubscribe(gone)
            assert hub.subscriber_count == 1
            await anyio.to_thread.run_sync(typing, app, conv.id, Message.AGENT)
            await take(stays, 1)
            assert gone.queue.empty()
            hub.unsubscribe(stays)
            assert hub.subscriber_count == 0

    run_async(scenario())


# --- replay ---------------------------------------------------------------------------------------


def test_replay_returns_only_later_events_in_scope(app, ws, site, online, rival):
    a = new_conversation(app, site, "a")
    b = new_conversation(app, site, "b")
    with connection():
        cut = streams.workspace_seq(ws)
    visitor_message(app, a.id, "a again")
    typing(app, b.id, Message.VISITOR)
    visitor_message(app, rival["conversation"].id, "theirs")
    typing(app, a.id, Message.AGENT)

    only_a = streams.replay(cut, conversation_id=a.id)
    assert [(r.conversation_id, r.kind) for r in only_a] == [(a.id, "message"), (a.id, "typing")]
    workspace = streams.replay(cut, workspace_id=ws)
    assert [(r.conversation_id, r.kind) for r in workspace] == [
        (a.id, "message"), (b.id, "typing"), (a.id, "typing")]
    assert [r.seq for r in workspace] == [cut + 1, cut + 2, cut + 3]
    with connection():
        assert streams.replay(streams.workspace_seq(ws), workspace_id=ws) == []
    everything = streams.replay(0, workspace_id=ws)
    assert {r.workspace_id for r in everything} == {ws}
    assert len(everything) == 5


def test_events_are_numbered_one_by_one_within_each_workspace(app, ws, site, online, rival):
    new_conversation(app, site)
    new_conversation(app, site)
    rows = streams.fetch_after(ws, 0)
    assert {r.workspace_id for r in rows} == {ws}
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert [r.seq for r in streams.fetch_after(rival["ws"], 0)] == [1]  # its own numbers
    assert streams.fetch_after(ws, rows[-1].seq) == []
    with connection():
        assert streams.workspace_seq(ws) == rows[-1].seq


# --- a stream from start to end ----------------------------------------------------------------------


def test_visitor_stream_replays_then_follows_without_gaps_or_repeats(app, ws, site, online):
    conv = new_conversation(app, site, "before the stream")
    with connection():
        first = streams.workspace_seq(ws)
    visitor_message(app, conv.id, "missed while reconnecting")

    async def scenario():
        async with running_hub(app) as hub:
            presence = (Presence.VISITOR, ws, conv.id)
            events = streams.follow(hub, after=first, presence=presence, workspace_id=ws,
                                    conversation_id=conv.id)
            try:
                replayed = (await asyncio.wait_for(anext(events), WAIT)).decode()
                assert "missed while reconnecting" in replayed
                # The hub writes arrivals together, a moment later (live.PRESENCE_GATHER).
                await eventually(lambda: in_app(app, service.visitor_connected, conv.id))

                def reply():
                    conversation = Conversation.get_by_id(conv.id)
                    user = conversation.workspace.memberships[0].user
                    return service.post_agent_reply(conversation, user, "live <b>answer</b>").id

                await anyio.to_thread.run_sync(in_app, app, reply)
                live_event = (await asyncio.wait_for(anext(events), WAIT)).decode()
                assert "live &lt;b&gt;answer&lt;/b&gt;" in live_event
                assert sse_id(live_event) > sse_id(replayed)
            finally:
                await events.aclose()
            # The stream said goodbye: the visitor soon no longer counts as connected.
            await eventually(lambda: not in_app(app, service.visitor_connected, conv.id))

    run_async(scenario())


def test_each_visitor_stream_hears_the_chat_in_its_own_language(app, ws, site, online):
    """The same visitor in a French and a German browser (a verified visitor on two devices):
    the team's typing reaches each stream in the language its widget was shown in, rendered
    once per language, and an English stream still gets English."""
    conv = new_conversation(app, site)

    async def scenario():
        async with running_hub(app) as hub:
            subs = {}
            for code in ("fr", "de", "en"):
                subs[code] = hub.subscribe(ws, conversation_id=conv.id, language=code)
            if not subs["fr"].known:
                with connection():
                    hub.begin(ws, streams.workspace_seq(ws))
            assert hub.visitor_audiences[conv.id] == (VISITOR, "visitor:de", "visitor:fr")
            await anyio.to_thread.run_sync(typing, app, conv.id, Message.AGENT)
            heard = {}
            for code, sub in subs.items():
                event = await asyncio.wait_for(sub.queue.get(), WAIT)
                heard[code] = sse_html(event.sse[sub.audience])
            assert "L'équipe écrit…" in heard["fr"]
            assert "Das Team schreibt…" in heard["de"]
            assert "The team is typing…" in heard["en"]
            assert [hub.renders[(a, ws, event.seq)] for a in event.sse] == [1, 1, 1]
            for sub in subs.values():
                hub.unsubscribe(sub)
            assert conv.id not in hub.visitor_audiences

    run_async(scenario())


def test_the_stream_ticket_carries_the_language_the_chat_was_shown_in(app, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("Bună ziua").status_code == 200
    chat = guest.http.get(guest.url("chat"), headers={**guest.headers,
                                                     "Accept-Language": "ro-RO,ro;q=0.9"})
    assert chat.status_code == 200
    ticket = re.search(r'/sse/visitor\?ticket=([^&"]+)', chat.get_data(as_text=True))[1]
    with app.app_context():
        assert widget_service.read_stream_ticket(ticket)["l"] == "ro"


# --- what each event looks like ------------------------------------------------------------------


def sse_id(data: str) -> int:
    return int(data.split("\r\n", 1)[0].removeprefix("id: "))


def sse_html(data: bytes | None) -> str | None:
    """The HTML an SSE message carries (its data lines joined), or None."""
    if data is None:
        return None
    lines = data.decode().split("\r\n")
    return "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))


def render_event(app, audience, event_id):
    """What the dispatcher sends `audience` for this event (by row id), as HTML."""
    with connection():
        row = ChatEvent.get_by_id(event_id)
    [sse] = render.Renderer(app).events([(row, (audience,))])
    return sse_html(sse[audience])


def last_event(**where):
    with connection():
        query = ChatEvent.select().order_by(ChatEvent.id.desc())
        for field, value in where.items():
            query = query.where(getattr(ChatEvent, field) == value)
        return query.first().id


SCRIPT = '<script>alert("stream")</script><img src=x onerror=alert(1)>'


def test_streamed_message_fragments_escape_the_text(app, ws, site, online):
    conv = new_conversation(app, site, SCRIPT)
    event = last_event(kind="message")
    agent = render_event(app, AGENT, event)
    visitor = render_event(app, VISITOR, event)
    for html in (agent, visitor):
        assert "<script>" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;stream&#34;)&lt;/script&gt;" in html
    assert f'hx-swap-oob="beforeend:#messages-{conv.id}"' in agent
    assert "csrf_token" not in agent  # stream fragments carry no token of their own
    assert 'hx-swap-oob="beforeend:#messages"' in visitor


def test_agent_sees_the_visitor_typing_but_not_their_own(app, ws, site, online):
    conv = new_conversation(app, site)
    typing(app, conv.id, Message.VISITOR)
    assert "is typing…" in render_event(app, AGENT, last_event())
    assert render_event(app, VISITOR, last_event()) is None
    typing(app, conv.id, Message.AGENT)
    assert render_event(app, AGENT, last_event()) is None
    assert "The team is typing…" in render_event(app, VISITOR, last_event())


def test_visitor_sees_seen_when_an_agent_reads(app, ws, site, online):
    conv = new_conversation(app, site)
    in_app(app, lambda: service.mark_read(Conversation.get_by_id(conv.id)))
    html = render_event(app, VISITOR, last_event(kind="read"))
    assert '<p id="seen" class="w-seen" hx-swap-oob="true">Seen</p>' in html


def test_a_status_change_shows_the_visitor_only_the_rating_question(app, ws, site, online):
    """The agents' controls (Reopen, assignment) never reach the visitor: a resolved
    conversation sends its visitor the rating question (app/chat/ratings.py), nothing else."""
    conv = new_conversation(app, site)
    in_app(app, lambda: service.set_status(Conversation.get_by_id(conv.id), "resolved"))
    event = last_event(kind="status")
    visitor_html = render_event(app, VISITOR, event)
    assert 'id="rating"' in visitor_html and "Reopen" not in visitor_html
    assert "Reopen" in render_event(app, AGENT, event)


def test_deleted_conversation_events_show_who_deleted_it_and_nothing_of_it(app, ws, site, online):
    by_visitor = new_conversation(app, site, "secret words one")
    by_agent = new_conversation(app, site, "secret words two")
    old_message_event = last_event(kind="message", conversation_id=by_agent.id)
    in_app(app, lambda: service.delete_conversation(Conversation.get_by_id(by_visitor.id),
                                                    Message.VISITOR))
    in_app(app, lambda: service.delete_conversation(Conversation.get_by_id(by_agent.id),
                                                    Message.AGENT))
    visitor_deleted = last_event(conversation_id=by_visitor.id)
    agent_deleted = last_event(conversation_id=by_agent.id)

    html = render_event(app, AGENT, visitor_deleted)
    assert "The visitor deleted this conversation." in html
    assert "secret words" not in html
    assert "This conversation was deleted." in render_event(app, AGENT, agent_deleted)
    assert "Your conversation was deleted" in render_event(app, VISITOR,
                                                            visitor_deleted)
    assert "The team deleted this conversation." in render_event(app, VISITOR,
                                                                 agent_deleted)
    # Its older events are gone with it; none could show its words again.
    with connection():
        assert ChatEvent.get_or_none(ChatEvent.id == old_message_event) is None


def test_a_purges_deletions_reach_open_inboxes_as_one_event_and_every_visitor_stream(
        app, ws, site, online):
    """The retention purge (another process, read back) deletes conversations by the hundred:
    a run of them is one event for the streams, numbered as the last, whose agents' notice
    drops each conversation and whose visitors' notice reaches each conversation's stream."""
    from datetime import timedelta

    from app.chat import retention
    from app.db import utcnow

    old = [new_conversation(app, site, f"old words {i}") for i in range(3)]
    kept = new_conversation(app, site, "kept words")
    with connection():
        Conversation.update(last_activity_at=utcnow() - timedelta(days=400)).where(
            Conversation.id.in_([c.id for c in old])).execute()

    async def scenario():
        async with running_hub(app) as hub:
            inbox = follow(hub, ws)
            widgets = [follow(hub, ws, c.id) for c in (old[0], old[2], kept)]
            assert await anyio.to_thread.run_sync(in_app, app, retention.purge_expired) == 3
            [event] = await take(inbox, 1)
            await asyncio.sleep(0.3)  # several rounds of the dispatcher: nothing more comes
            assert inbox.queue.empty()
            with connection():
                seqs = [e.seq for e in ChatEvent.select().where(ChatEvent.kind == ChatEvent.DELETED)
                        .order_by(ChatEvent.seq)]
            assert sorted(event.conversation_ids) == [c.id for c in old]
            assert event.seq == seqs[-1] and len(seqs) == 3
            notice = sse_html(event.sse[AGENT])
            for conv in old:
                assert f'id="conv-{conv.id}"' in notice and f'id="conversation-{conv.id}"' in notice
            assert f"conv-{kept.id}" not in notice and "old words" not in notice
            for widget in widgets[:2]:
                [got] = await take(widget, 1)
                assert got is event and "The team deleted this conversation." in sse_html(
                    got.sse[VISITOR])
            assert widgets[2].queue.empty()  # a conversation that stays hears nothing
            assert hub.read_back == 3

    run_async(scenario())


def test_hub_stops_even_when_woken_at_the_moment_it_is_stopped(app, ws, site):
    """Server shutdown must not hang: a notify() landing as the dispatcher is cancelled
    (asyncio.wait_for in Python 3.11 may then swallow the cancellation) still stops it."""

    async def scenario():
        hub = live.Hub(database_of(app), streams.fetch_after)
        await hub.start()
        await asyncio.sleep(0)  # the dispatcher is now waiting for a wake-up or its next check
        hub.wake.set()  # a commit's notify() arrives...
        stopping = asyncio.ensure_future(hub.stop())  # ...just as the server stops
        try:
            done, _ = await asyncio.wait({stopping}, timeout=WAIT)
            assert stopping in done, "Hub.stop() did not return"
            assert hub.task.done()
        finally:
            while not hub.task.done():  # clean up after a failure
                hub.task.cancel()
                await asyncio.wait({hub.task}, timeout=0.1)
            await stopping

    run_async(scenario())


# --- no stalls -----------------------------------------------------------------------------------


def test_a_storm_of_arrivals_is_written_as_one_presence_round(app, ws, site):
    """A thousand browsers reconnecting at once (a restart) must not queue a thousand presence
    transactions for the write lock ahead of the messages: arrivals are written together."""
    rounds = []

    def counted_presence(process_id, keys, gone, refresh=False):
        rounds.append((len(keys), len(gone)))
        streams.write_presence(process_id, keys, gone, refresh)

    def present():
        with connection():
            return Presence.select().where(Presence.kind == Presence.VISITOR).count()

    async def scenario():
        hub = live.Hub(database_of(app), streams.fetch_after, presence=counted_presence)
        await hub.start()
        try:
            keys = [(Presence.VISITOR, ws, conversation_id) for conversation_id in range(1, 1001)]
            for key in keys:
                hub.arrive(key)
            await eventually(lambda: present() == 1000)
            assert rounds == [(1000, 0)]
            for key in keys[:600]:
                hub.leave(key)
            await eventually(lambda: present() == 400)
            assert rounds[1:] == [(0, 600)]
        finally:
            await hub.stop()
        assert present() == 0  # a stopped hub leaves no presence behind

    run_async(scenario())


@pytest.mark.sqlite_only("FTS5's segments; PostgreSQL's search column needs no upkeep")
def test_the_worker_merges_the_search_index_in_small_steps(app, auth, site, online):
    from app.db import database
    from jobs import chat as chat_jobs

    guest = WidgetVisitor.arrive(app, site.site_key)
    for i in range(12):  # each insert leaves a segment of its own
        assert guest.send(f"parcel number {i}").status_code == 200
    with app.app_context():
        chat_jobs.merge_search_index()  # a periodic task of the worker (immediate mode here)
    with app.app_context(), connection():
        assert service.merge_search_index() == 0  # nothing was left to merge
        assert database.execute_sql("SELECT count(*) FROM message_fts WHERE message_fts MATCH "
                                    "'parcel'").fetchone() == (12,)


def test_the_web_process_freezes_its_start_up_heap_and_collects_less_often(app):
    import gc

    from app.asgi import GC_YOUNG_THRESHOLD, build
    from tests.test_chat_stream_replay import lifespan

    before = gc.get_threshold()
    seen = {}

    async def scenario():
        async with lifespan(build(app)):
            seen["frozen"], seen["threshold"] = gc.get_freeze_count(), gc.get_threshold()

    run_async(scenario())
    assert seen["frozen"] > 0 and seen["threshold"][0] == GC_YOUNG_THRESHOLD
    assert gc.get_threshold() == before  # left as found when the app stops
