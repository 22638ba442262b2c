"""This process's chat writes reach its streams from memory: rendered by the writing thread,
handed to the loop, never read back; and an event of another process that lands between two of
ours is read and delivered in its place, so every stream sees the workspace's numbers in order."""

import asyncio

import anyio

from app.chat.live import AGENT
from app.chat.models import ChatEvent
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    WidgetVisitor,
    online_fixture,
    run_async,
    site_fixture,
    ws_fixture,
)
from tests.test_chat_streams import (
    WAIT,
    commit_elsewhere,
    follow,
    running_hub,
    sse_html,
    take,
    visitor_message,
)


def test_this_processs_messages_are_published_from_memory_not_read_back(app, ws, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("first").status_code == 200
    conv = guest.conversation()

    async def scenario():
        async with running_hub(app) as hub:
            agents = follow(hub, ws)
            for body in ("one", "two", "three"):
                await anyio.to_thread.run_sync(visitor_message, app, conv.id, body)
            got = await take(agents, 3)
            assert [sse_html(e.sse[AGENT]).count(body) > 0
                    for e, body in zip(got, ("one", "two", "three"), strict=True)] == [True] * 3
            assert [e.seq for e in got] == sorted(e.seq for e in got)
            await asyncio.sleep(0.2)  # the watcher has seen the commits by now
            assert hub.read_back == 0
            assert all(hub.renders[(AGENT, ws, e.seq)] == 1 for e in got)

    run_async(scenario())


def test_another_processs_event_between_two_of_ours_is_delivered_in_its_place(
        app, ws, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("first").status_code == 200
    conv = guest.conversation()

    def other_process_typing():
        # Another process's commit: a connection of its own, no publish, no notify.
        commit_elsewhere(app, ws, conv.id, ChatEvent.TYPING)

    async def scenario():
        async with running_hub(app) as hub:
            agents = follow(hub, ws)
            await anyio.to_thread.run_sync(visitor_message, app, conv.id, "before")
            await anyio.to_thread.run_sync(other_process_typing)
            await anyio.to_thread.run_sync(visitor_message, app, conv.id, "after")
            got = await take(agents, 3)
            assert [e.kind for e in got] == ["message", "typing", "message"]
            assert [e.seq for e in got] == [got[0].seq, got[0].seq + 1, got[0].seq + 2]
            assert "after" in sse_html(got[2].sse[AGENT])
            assert hub.read_back == 1  # only the other process's event was read
            with anyio.fail_after(WAIT):
                while hub.pending:
                    await asyncio.sleep(0.01)

    run_async(scenario())


def test_the_hub_counts_renderings_of_recent_events_only(app, ws, site, online):
    """A long-lived process keeps no key per event it ever rendered (it would grow with every
    message, and every full garbage collection would walk it)."""
    from app.chat import events, live, streams
    from app.chat.models import Conversation
    from app.db import connection, database

    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("first").status_code == 200
    conv = guest.conversation()
    many = 2 * live.RENDER_CACHE + 50
    with connection(), database.atomic():
        events.record([live.Written(None, ws, conv.id, ChatEvent.TYPING, actor="visitor")
                       for _ in range(many)])
        assert Conversation.get_by_id(conv.id)

    async def scenario():
        async with running_hub(app) as hub:
            rows = await anyio.to_thread.run_sync(streams.fetch_after, ws, 0)
            while rows:
                await anyio.to_thread.run_sync(hub.render, [(row, (AGENT,)) for row in rows])
                rows = await anyio.to_thread.run_sync(streams.fetch_after, ws, rows[-1].seq)
            assert len(hub.renders) <= 2 * live.RENDER_CACHE
            newest = max(seq for _, _, seq in hub.renders)
            assert hub.renders[(AGENT, ws, newest)] == 1

    run_async(scenario())
