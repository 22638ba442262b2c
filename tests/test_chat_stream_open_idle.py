"""What opening and idling a stream costs the web process, as promises that hold whatever the
box's speed: streams opening together share one worker thread hop, an idle round of presence
is one statement, the ticker forgets streams that have gone, and the hub stops even when a
stream arrives at that very moment. (The figures themselves: tests/bench/stream_cost.py.)"""

import asyncio
import logging
import threading

from app.chat import live, streams
from app.chat.models import Presence
from app.db import connection
from app.widget import service as widget_service
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    online_fixture,
    run_async,
    site_fixture,
    ws_fixture,
)
from tests.test_chat_stream_replay import served  # noqa: F401, F811  (fixture)
from tests.test_chat_streams import WAIT, new_conversation, running_hub

OPENING = 20  # streams opened at the same moment


def test_streams_opening_together_are_checked_and_replayed_in_one_thread_hop(app, ws, site, online):
    conv = new_conversation(app, site, "before they open")
    threads, refused = [], []

    def check():
        threads.append(threading.get_ident())
        return True

    async def scenario():
        async with running_hub(app) as hub:
            opened = await asyncio.gather(*[
                streams.admit(hub, 0, (Presence.VISITOR, ws, conv.id), check=check,
                              workspace_id=ws, conversation_id=conv.id) for _ in range(OPENING)])
            try:
                # Each replayed the conversation's message; all checks ran in one thread.
                assert all(any(b"before they open" in data for data in o.first) for o in opened)
                assert len(threads) == OPENING and len(set(threads)) == 1
                # A stream whose check says no is refused and leaves no subscriber behind.
                refused.append(await streams.admit(hub, 0, (Presence.VISITOR, ws, conv.id),
                                                   check=lambda: False, workspace_id=ws,
                                                   conversation_id=conv.id))
                assert hub.subscriber_count == OPENING
            finally:
                for o in opened:
                    o.close()
            assert hub.subscriber_count == 0

    run_async(scenario())
    assert refused == [None]


def test_a_presence_refresh_of_a_thousand_streams_is_one_update(app, ws, caplog):
    keys = [(Presence.VISITOR, ws, conversation_id) for conversation_id in range(1, 1001)]
    with connection():
        streams.write_presence("p1", keys, [])
        before = Presence.select(Presence.seen_at).where(Presence.subject_id == 1).scalar()
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="peewee"):  # every statement peewee runs
            streams.write_presence("p1", keys, [], refresh=True)
        said = [record.msg[0] for record in caplog.records if record.name == "peewee"]
        statements = [s for s in said if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]
        assert len(statements) == 1 and statements[0].startswith("UPDATE")
        assert Presence.select().where(Presence.seen_at > before).count() == 1000

        # A row deleted by someone else's clean-up is written again by the next refresh.
        Presence.delete().where(Presence.subject_id == 7).execute()
        streams.write_presence("p1", keys, [], refresh=True)
        assert Presence.select().count() == 1000


def test_the_ticker_forgets_streams_that_have_gone(app, ws):
    async def scenario():
        hub = live.Hub(app.config["DATABASE"], streams.fetch_after)
        kept = [hub.subscribe(ws, allowed=lambda: True) for _ in range(10)]
        for _ in range(5000):  # browsers that came and went
            hub.unsubscribe(hub.subscribe(ws, allowed=lambda: True))
        assert len(hub.agenda) < 1000  # not 10,000 entries of streams long gone
        assert set(kept) <= {entry[3] for entry in hub.agenda}  # the open ones stay on it

    run_async(scenario())


def test_hub_stops_even_when_a_stream_arrives_as_it_stops(app, ws):
    """A stream arriving wakes the presence task as the hub cancels it (Python 3.11's
    asyncio.wait_for may then swallow the cancellation): stop() must still return."""

    async def scenario():
        hub = live.Hub(app.config["DATABASE"], streams.fetch_after,
                       presence=streams.write_presence)
        await hub.start()
        await asyncio.sleep(0)  # the presence task now waits for an arrival
        hub.arrive((Presence.AGENT, ws, 1))
        stopping = asyncio.ensure_future(hub.stop())
        done, _ = await asyncio.wait({stopping}, timeout=WAIT)
        assert stopping in done, "Hub.stop() did not return"

    run_async(scenario())


def test_a_visitor_stream_is_refused_when_its_ticket_does_not_hold(app, ws, site, online,
                                                                 served):  # noqa: F811
    """The ticket's signature is read before the stream subscribes; the conversation is checked
    in the open's thread hop: a forged ticket, another visitor's conversation or a deleted one
    is refused with 403, and leaves no stream behind."""
    import httpx

    from app.chat.models import Conversation
    from app.widget.models import Visitor
    from tests.test_chat_stream_replay import new_conversation as ticketed

    conv, ticket, _ = ticketed(app, site, "mine")
    other, _, _ = ticketed(app, site, "theirs")
    with app.app_context(), connection():
        stranger = Visitor.get_by_id(Conversation.get_by_id(conv.id).visitor_id)
        wrong_visitor = widget_service.stream_ticket(other, stranger)
    with httpx.Client(base_url=served, timeout=WAIT) as http:
        assert http.get("/sse/visitor", params={"ticket": ticket + "x"}).status_code == 403
        assert http.get("/sse/visitor", params={"ticket": wrong_visitor}).status_code == 403
        with http.stream("GET", "/sse/visitor", params={"ticket": ticket}) as response:
            assert response.status_code == 200  # the ticket holds while its conversation does
        with app.app_context(), connection():
            Conversation.delete_by_id(conv.id)
        refused = http.get("/sse/visitor", params={"ticket": ticket})
        assert refused.status_code == 403
        assert "not valid any more" in refused.text
