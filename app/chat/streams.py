"""The two chat streams (an agent's workspace, a visitor's conversation) as async generators of
SSE bytes.

Each event's SSE id is the ChatEvent id. A browser that reconnects sends Last-Event-ID (or the
page passes `after`, the last event it rendered), and the stream first replays what came
after it from the database, then follows the dispatcher, skipping anything already sent:
nothing lost, nothing twice.
"""

import asyncio
import contextlib
from datetime import datetime, timezone

import anyio
from flask import render_template
from peewee import chunked

from app.chat import live, render
from app.chat.models import ChatEvent, Presence
from app.db import database, thread_connection
from app.models import utcnow
from app.paging import whole_number

HEARTBEAT_SECONDS = 15
# A visitor's stream ends when its ticket expires (hours) or its conversation goes; checking that
# every two minutes is plenty, and a thousand open widgets then cost ~8 checks a second.
VISITOR_RECHECK_SECONDS = 120
REPLAY_LIMIT = 1000


def fetch_after(last_id: int):
    with thread_connection():
        return list(ChatEvent.select(ChatEvent.id, ChatEvent.workspace_id, ChatEvent.conversation_id,
                                     ChatEvent.kind, ChatEvent.ref_id, ChatEvent.actor)
                    .where(ChatEvent.id > last_id).order_by(ChatEvent.id).limit(500).namedtuples())


def max_event_id() -> int:
    with thread_connection():
        row = ChatEvent.select(ChatEvent.id).order_by(ChatEvent.id.desc()).first()
        return row.id if row else 0


def replay(after: int, workspace_id=None, conversation_id=None):
    with thread_connection():
        query = ChatEvent.select(ChatEvent.id, ChatEvent.workspace_id, ChatEvent.conversation_id,
                                 ChatEvent.kind, ChatEvent.ref_id, ChatEvent.actor)
        if conversation_id is not None:
            query = query.where(ChatEvent.conversation_id == conversation_id)
        else:
            query = query.where(ChatEvent.workspace_id == workspace_id)
        return list(query.where(ChatEvent.id > after).order_by(ChatEvent.id)
                    .limit(REPLAY_LIMIT).namedtuples())


def parse_after(request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    # Not an id we could have sent (a word, or past SQLite's integers): replay from the start.
    return whole_number(raw) or 0


PRESENCE_BATCH = 500  # rows per INSERT: well under SQLite's limit of bound parameters


def write_presence(process_id: str, keys, gone) -> None:
    """Upsert this process's presence rows for `keys` and delete those for `gone`: one short
    transaction, one multi-row statement per PRESENCE_BATCH rows (the hub calls it; see
    live.Hub.arrive)."""
    def stream_id(kind, workspace_id, subject_id):
        return f"{process_id}:{kind}:{workspace_id}:{subject_id}"

    now = utcnow()
    with thread_connection(), database.atomic():
        for batch in chunked(keys, PRESENCE_BATCH):
            (Presence.insert_many([{"kind": kind, "workspace_id": workspace_id,
                                    "subject_id": subject_id, "seen_at": now,
                                    "stream_id": stream_id(kind, workspace_id, subject_id)}
                                   for kind, workspace_id, subject_id in batch])
             .on_conflict(conflict_target=[Presence.stream_id], update={Presence.seen_at: now})
             .execute())
        for batch in chunked(gone, PRESENCE_BATCH):
            Presence.delete().where(
                Presence.stream_id.in_([stream_id(*key) for key in batch])).execute()


KEEP_ALIVE = b": \r\n\r\n"  # an SSE comment: what a stream without a status line sends


async def follow(hub, after: int, presence: tuple, heartbeat=None, allowed=None,
                 workspace_id=None, conversation_id=None, recheck_seconds=HEARTBEAT_SECONDS,
                 attach=None):
    """Replay, then follow the dispatcher; yields SSE bytes ready to send.

    The stream renders nothing itself: the dispatcher rendered each event once for its
    audience (a workspace's streams are agents', a conversation's the visitor's) and every
    stream writes those same bytes; a replayed event uses the dispatcher's rendering while
    the hub keeps it. The hub's ticker puts a heartbeat in the queue every HEARTBEAT_SECONDS
    (the status line `heartbeat()` renders, once for all streams, or a bare keep-alive) and
    asks `allowed()` about every `recheck_seconds`, putting END in the queue when it says no:
    a stream ends soon after its session is logged out or its member removed, and waits on
    nothing but its queue. `attach(sub)`, when given, learns the subscriber (EventStream ends
    it through its queue when the browser goes).
    """
    sub = hub.subscribe(workspace_id=workspace_id, conversation_id=conversation_id,
                        allowed=allowed, heartbeat=heartbeat, beat_every=HEARTBEAT_SECONDS,
                        check_every=recheck_seconds)
    if attach is not None:
        attach(sub)
    audience = sub.audience
    hub.arrive(presence)

    def replay_page(after):
        rows = replay(after, workspace_id, conversation_id)
        return rows, hub.replay_rendered(rows, audience)

    try:
        if heartbeat is not None:
            yield await anyio.to_thread.run_sync(heartbeat)
        # Subscribed before the replay query, so nothing falls between the two; replayed in
        # pages until caught up with what the subscription has queued.
        while True:
            rows, sent = await anyio.to_thread.run_sync(replay_page, after)
            for row, data in zip(rows, sent, strict=True):
                after = row.id
                if data is not None:
                    yield data
            if len(rows) < REPLAY_LIMIT:
                break
        while not sub.dropped:
            item = await sub.queue.get()
            if item is live.END:
                return
            if isinstance(item, live.Beat):
                yield KEEP_ALIVE if item.data is None else item.data
                continue
            if item.id <= after:
                continue  # already sent by the replay
            after = item.id
            if (data := item.sse.get(audience)) is not None:
                yield data
    finally:
        hub.unsubscribe(sub)
        hub.leave(presence)


def status_heartbeat(flask_app):
    """The dashboard's status line as SSE bytes (no request needed: it links nowhere)."""
    def heartbeat():
        with flask_app.app_context():
            at = datetime.now(timezone.utc).strftime("%H:%M:%S")
            return render.encode(render_template("dashboard/_status.html", at=at), event="status")
    return heartbeat


SEND_TIMEOUT = 10  # seconds a send may wait on a client that does not read before it is let go
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
               (b"x-accel-buffering", b"no")]


class EventStream:
    """A streaming ASGI response for `follow()`: one coroutine writes the bytes it yields, and
    one small task waits for the browser to go (http.disconnect), then ends the stream through
    its subscriber's queue. In place of sse-starlette's EventSourceResponse, which keeps a task
    group of four tasks per stream (the stream, a disconnect listener, a server-exit listener,
    a ping timer): at thousands of idle streams that was most of their memory
    (tests/bench/stream_cost.py measures it). Heartbeats come from the hub's ticker."""

    def __init__(self, make_events):
        self.make_events = make_events  # (attach) -> follow(...) generator

    async def __call__(self, scope, receive, send):
        watcher = None

        async def until_gone(sub):
            while (await receive())["type"] != "http.disconnect":
                pass
            sub.put(live.END)

        def attach(sub):  # called by follow() once subscribed
            nonlocal watcher
            watcher = asyncio.ensure_future(until_gone(sub))

        events = self.make_events(attach)

        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        try:
            async for data in events:
                try:
                    async with asyncio.timeout(SEND_TIMEOUT):
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                except TimeoutError:
                    return  # a client that does not read: dropped (its browser reconnects)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await events.aclose()
