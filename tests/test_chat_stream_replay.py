"""A reconnecting stream gets exactly what it missed, through the ASGI app itself.

An event can be both replayed from the database and queued live (the stream subscribes
before it replays, so nothing falls between the two): it must reach the browser once. And
the `Last-Event-ID` header a browser sends on reconnecting is honoured by both streams,
through a real uvicorn (uvloop + httptools, as the Procfile runs it).
"""

import asyncio
import contextlib
import re

import anyio
import httpx
import pytest

from app.asgi import build
from app.chat import service
from app.chat.models import ChatEvent, Conversation
from app.db import connection
from app.widget import service as widget_service
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    WidgetVisitor,
    online_fixture,
    run_async,
    site_fixture,
    ws_fixture,
)
from tests.served import LiveServer

WAIT = 5  # seconds: an upper bound for something that normally takes milliseconds


def visitor_message(app, conversation_id, body) -> int:
    """Post as the visitor through the chat service; the message's event number (SSE id)."""
    with app.app_context(), connection():
        conv = Conversation.get_by_id(conversation_id)
        message = service.post_visitor_message(conv.site, conv.visitor, body)
        return ChatEvent.get((ChatEvent.kind == ChatEvent.MESSAGE)
                             & (ChatEvent.ref_id == message.id)).seq


def new_conversation(app, site, body):
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send(body).status_code == 200
    conv = guest.conversation()
    with app.app_context(), connection():
        ticket = widget_service.stream_ticket(conv, Conversation.get_by_id(conv.id).visitor)
        first = ChatEvent.get((ChatEvent.kind == ChatEvent.MESSAGE)
                              & (ChatEvent.conversation_id == conv.id)).seq
    return conv, ticket, first


def session_cookie(app, client) -> str:
    name = app.config["SESSION_COOKIE_NAME"]
    return f"{name}={client.get_cookie(name).value}"


EVENT = re.compile(r"id: (\d+)\r?\nevent: update\r?\ndata: ")


def update_ids(text: str) -> list[int]:
    return [int(found) for found in EVENT.findall(text)]


# --- the ASGI app called directly ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(asgi):
    """Run the app's lifespan (the hub starts there) around the block."""
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    task = asyncio.create_task(asgi({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                    inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(outbox.get(), WAIT))["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), WAIT)
        await asyncio.wait_for(task, WAIT)


def test_an_event_both_replayed_and_queued_live_reaches_the_stream_once(app, auth, ws, site,
                                                                         online):
    conv, _, first = new_conversation(app, site, "before the stream")
    root = build(app)
    hub = root.app.state.hub
    body = bytearray()
    done = asyncio.Event()
    posted = {}

    async def send(message):
        if message["type"] != "http.response.body":
            return
        body.extend(message.get("body", b""))
        if "landed" not in posted:
            # The first chunk is the status line, sent after the stream subscribed and before
            # its replay reads the database: a message committed now is queued live for this
            # stream AND found by its replay.
            posted["landed"] = await anyio.to_thread.run_sync(visitor_message, app, conv.id,
                                                              "replayed and live")
            [sub] = hub.by_workspace[ws]
            with anyio.fail_after(WAIT):
                while sub.queue.empty():  # the dispatcher has not queued it yet
                    await asyncio.sleep(0.005)
        elif posted["landed"] in update_ids(body.decode()) and "after" not in posted:
            posted["after"] = await anyio.to_thread.run_sync(visitor_message, app, conv.id,
                                                             "later")
        elif "after" in posted and posted["after"] in update_ids(body.decode()):
            done.set()

    async def receive():
        await done.wait()
        return {"type": "http.disconnect"}

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/sse/dashboard", "raw_path": b"/sse/dashboard",
             "query_string": f"after={first}".encode(), "root_path": "",
             "headers": [(b"host", b"localhost"),
                         (b"cookie", session_cookie(app, auth).encode())],
             "client": ("127.0.0.1", 50000), "server": ("localhost", 80), "state": {}}

    async def scenario():
        async with lifespan(root):
            await asyncio.wait_for(root(scope, receive, send), WAIT)

    run_async(scenario())
    ids = update_ids(body.decode())
    assert ids == [posted["landed"], posted["after"]]


# --- through a real uvicorn ---------------------------------------------------------------------


@pytest.fixture
def served(app):
    """The ASGI app under uvicorn (uvloop, httptools) on loopback; its base URL."""
    with LiveServer(build(app), loop="uvloop", http="httptools") as server:
        yield server.url


def read_until_posted(app, response, conv_id):
    """Read the stream; once its first chunk proves it subscribed, post a message; read on
    until that message's event has arrived. (Its text is no mark: an earlier event rendered
    after it was posted shows it as the conversation's preview.) Everything read."""
    text, posted = "", None
    for chunk in response.iter_text():
        text += chunk
        if posted is None:
            posted = visitor_message(app, conv_id, "posted while open")
        if posted in update_ids(text):
            return text, posted
    raise AssertionError(f"the stream ended before event {posted}:\n{text}")


def test_dashboard_stream_honours_last_event_id(app, auth, ws, site, online, served):
    conv, _, first = new_conversation(app, site, "one")
    second = visitor_message(app, conv.id, "two")
    third = visitor_message(app, conv.id, "three")
    headers = {"Cookie": session_cookie(app, auth), "Last-Event-ID": str(second)}
    with httpx.Client(base_url=served, timeout=WAIT) as http, \
            http.stream("GET", "/sse/dashboard", headers=headers) as response:
        assert response.status_code == 200
        text, fourth = read_until_posted(app, response, conv.id)
    assert update_ids(text) == [third, fourth]


def test_visitor_stream_honours_last_event_id(app, ws, site, online, served):
    conv, ticket, first = new_conversation(app, site, "one")
    second = visitor_message(app, conv.id, "two")
    third = visitor_message(app, conv.id, "three")
    with httpx.Client(base_url=served, timeout=WAIT) as http, \
            http.stream("GET", "/sse/visitor", params={"ticket": ticket},
                        headers={"Last-Event-ID": str(first)}) as response:
        assert response.status_code == 200
        text, fourth = read_until_posted(app, response, conv.id)
    assert update_ids(text) == [second, third, fourth]
