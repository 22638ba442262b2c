"""A chat event is rendered once per audience, by the dispatcher, into the bytes every stream
sends; and what it renders is what the pages render for the same message (same partials,
links built without a request)."""

import asyncio
import re

import anyio
import pytest

from app.chat import render, streams
from app.chat.live import AGENT, VISITOR
from app.chat.models import ChatEvent
from app.db import connection
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    WidgetVisitor,
    online_fixture,
    png_bytes,
    run_async,
    site_fixture,
    ws_fixture,
)
from tests.test_chat_streams import WAIT, follow, running_hub, sse_html, take, visitor_message

STREAMS = 7  # of each audience, all watching the same conversation


def test_an_event_is_rendered_once_per_audience_however_many_streams_watch_it(app, ws, site,
                                                                              online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("first").status_code == 200
    conv = guest.conversation()

    async def scenario():
        async with running_hub(app) as hub:
            agents = [follow(hub, ws) for _ in range(STREAMS)]
            visitors = [follow(hub, ws, conv.id) for _ in range(STREAMS)]
            message_id = await anyio.to_thread.run_sync(visitor_message, app, conv.id, "hello all")
            got = [(await take(sub, 1))[0] for sub in agents + visitors]
            [event] = {id(item): item for item in got}.values()  # one object for every stream
            assert (event.kind, event.ref_id) == ("message", message_id)
            assert hub.renders[(AGENT, ws, event.seq)] == 1
            assert hub.renders[(VISITOR, ws, event.seq)] == 1
            assert "hello all" in sse_html(event.sse[AGENT])
            assert "hello all" in sse_html(event.sse[VISITOR])
            assert event.sse[AGENT].startswith(f"id: {event.seq}\r\nevent: update\r\ndata: ".encode())

            # A stream that replays the event later sends the same bytes, not a new rendering.
            late = streams.follow(hub, after=event.seq - 1, presence=(VISITOR, ws, conv.id),
                                  workspace_id=ws, conversation_id=conv.id)
            try:
                assert await asyncio.wait_for(anext(late), WAIT) == event.sse[VISITOR]
            finally:
                await late.aclose()
            assert hub.renders[(VISITOR, ws, event.seq)] == 1

    run_async(scenario())


def test_an_event_nobody_watches_is_not_rendered(app, ws, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)

    async def scenario():
        async with running_hub(app) as hub:
            assert (await anyio.to_thread.run_sync(guest.send, "unwatched")).status_code == 200
            await asyncio.sleep(0.3)  # several rounds of the watcher
            assert not hub.renders and hub.read_back == 0  # not rendered, not even read
            assert ws not in hub.cursor  # no stream here: the workspace is not followed

    run_async(scenario())


def item(html: str, element_id: str) -> str:
    """The <li id=element_id>…</li> a page or fragment holds (message items nest no <li>)."""
    found = re.search(rf'<li id="{element_id}"[^>]*>.*?</li>', html, re.S)
    assert found, f"no {element_id} in:\n{html}"
    return found.group(0)


def streamed(app, audience, event_id) -> str:
    with connection():
        row = ChatEvent.get_by_id(event_id)
    [sse] = render.Renderer(app).events([(row, (audience,))])
    return sse_html(sse[audience])


def test_a_streamed_message_is_the_same_html_the_pages_render(app, auth, ws, site, online):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("a <b>picture</b>", file=(png_bytes(), "dot.png", "image/png")).status_code == 200
    assert guest.send("and words\nover two lines").status_code == 200
    conv = guest.conversation()
    with connection():
        events = list(ChatEvent.select().where((ChatEvent.conversation_id == conv.id)
                                               & (ChatEvent.kind == ChatEvent.MESSAGE))
                      .order_by(ChatEvent.id))
    assert len(events) == 2

    page = auth.get(f"/dashboard/conversations/{conv.id}")
    assert page.status_code == 200
    dashboard = page.get_data(as_text=True)
    widget = guest.chat().get_data(as_text=True)
    for event in events:
        agent_fragment = streamed(app, AGENT, event.id)
        assert item(agent_fragment, f"msg-{event.ref_id}") == item(dashboard, f"msg-{event.ref_id}")
        visitor_fragment = streamed(app, VISITOR, event.id)
        # The widget's file links carry a signed token stamped with the second it was made:
        # compare with the stamp and signature set aside (the payload part stays).
        stamp = re.compile(r'(/widget/files/[^."?]+\.)[^"?]+')
        assert (stamp.sub(r"\1", item(visitor_fragment, f"m-{event.ref_id}"))
                == stamp.sub(r"\1", item(widget, f"m-{event.ref_id}")))
    # The picture's links were compared too: built by the stream's own URL map, not a request.
    first = events[0].ref_id
    assert 'class="thumb"' in item(dashboard, f"msg-{first}")
    assert len(stamp.findall(item(widget, f"m-{first}"))) == 2  # its link and its image


@pytest.mark.parametrize("html, event_id, event", [
    ("<p>one line</p>", 7, "update"),
    ("a\nb\r\nc\rd", 12, "update"),
    ("\n<li>\n  trailing\n", None, "status"),
    ("", 1, "update"),
])
def test_our_sse_encoding_is_byte_for_byte_sse_starlettes(html, event_id, event):
    from sse_starlette import ServerSentEvent

    from app.chat.render import encode

    expected = ServerSentEvent(data=html, event=event,
                               id=None if event_id is None else str(event_id)).encode()
    assert encode(html, event_id, event) == expected
