"""The two chat streams (an agent's workspace, a visitor's conversation) as async generators of
SSE bytes.

Each event's SSE id is its number in its workspace (ChatEvent.seq, see app/chat/events.py). A browser that reconnects sends Last-Event-ID (or the
page passes `after`, the last event it rendered), and the stream first replays what came
after it from the database, then follows the hub, skipping anything already sent:
nothing lost, nothing twice.
"""

import asyncio
import contextlib
import weakref
from datetime import datetime, timezone
from typing import NamedTuple

import anyio
from flask import render_template
from peewee import chunked
from starlette.responses import PlainTextResponse

from app.accounts import sessions
from app.chat import live, render
from app.chat.models import ChatEvent, EventCounter, Presence
from app.db import database, dialect, thread_connection, utcnow
from app.paging import whole_number
from app.widget import language as widget_language
from app.widget import service as widget_service

HEARTBEAT_SECONDS = 15
# A visitor's stream sends only a keep-alive comment, which proxies need at least once a minute
# (nginx's read timeout is 60 s, Heroku's router 55 s); EventSource itself has no idle timeout.
# Every 30 s halves what a thousand idle widgets cost against every 15 s.
VISITOR_HEARTBEAT_SECONDS = 30
# A visitor's stream ends when its ticket expires (hours) or its conversation goes; checking that
# every two minutes is plenty, and a thousand open widgets then cost ~8 checks a second.
VISITOR_RECHECK_SECONDS = 120
REPLAY_LIMIT = live.READ_LIMIT


def fetch_after(workspace_id: int, after: int) -> list:
    """The dispatcher's read (live.Hub.fetch_after): a workspace's events after `after`."""
    return replay(after, workspace_id=workspace_id)


def workspace_seq(workspace_id: int) -> int:
    """The workspace's last event number: a stream that starts the hub's following of its
    workspace reads it before its replay (live.Hub.begin)."""
    with thread_connection():
        row = EventCounter.get_or_none(EventCounter.workspace_id == workspace_id)
        return row.seq if row else 0


class ReplayRow(NamedTuple):
    seq: int
    workspace_id: int
    conversation_id: int
    kind: str
    ref_id: int | None
    actor: str


def _replay_statement(scope_field) -> str:
    """The replay query's SQL, built once by peewee (its public Query.sql()): every open runs
    it, and building it anew each time was a quarter of an open's CPU."""
    sql, params = (ChatEvent.select(*[getattr(ChatEvent, name) for name in ReplayRow._fields])
                   .where((scope_field == -1) & (ChatEvent.seq > -2)).order_by(ChatEvent.seq)
                   .limit(REPLAY_LIMIT).sql())
    if params[:2] != [-1, -2]:  # the two values replay() binds, in this order
        raise RuntimeError(f"unexpected replay parameters {params}")
    return sql, params[2:]


_REPLAY = {}


def replay(after: int, workspace_id=None, conversation_id=None) -> list:
    """Events after `after` in a conversation (a visitor's stream) or a workspace (agents')."""
    scoped = conversation_id is not None
    statement = _REPLAY.get((scoped, dialect()))
    if statement is None:
        statement = _REPLAY[scoped, dialect()] = _replay_statement(
            ChatEvent.conversation_id if scoped else ChatEvent.workspace_id)
    sql, rest = statement
    with thread_connection():
        cursor = database.execute_sql(
            sql, [conversation_id if scoped else workspace_id, after, *rest])
        return [ReplayRow(*row) for row in cursor.fetchall()]


def parse_after(request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    # Not an id we could have sent (a word, or past SQLite's integers): replay from the start.
    return whole_number(raw) or 0


PRESENCE_BATCH = 500  # rows per INSERT: well under SQLite's limit of bound parameters


def write_presence(process_id: str, keys, gone, refresh: bool = False) -> None:
    """Upsert this process's presence rows for `keys` and delete those for `gone`: one short
    transaction, one multi-row statement per PRESENCE_BATCH rows (the hub calls it; see
    live.Hub.arrive). `refresh`: `keys` are every key present in this process, whose rows
    are already written: one UPDATE of this process's rows moves their time on (building a
    thousand-row upsert was most of an idle server's CPU); only when some row is missing
    (deleted by another process's clean-up) is the upsert written."""
    def stream_id(kind, workspace_id, subject_id):
        return f"{process_id}:{kind}:{workspace_id}:{subject_id}"

    now = utcnow()
    with thread_connection(), database.atomic():
        for batch in chunked(gone, PRESENCE_BATCH):
            Presence.delete().where(
                Presence.stream_id.in_([stream_id(*key) for key in batch])).execute()
        if refresh and keys:
            # This process's rows are the stream ids between "<process>:" and "<process>;"
            # (";" sorts right after ":"): a range of the unique index.
            moved = Presence.update(seen_at=now).where(
                (Presence.stream_id > f"{process_id}:") & (Presence.stream_id < f"{process_id};")).execute()
            if moved == len(keys):
                keys = ()
        for batch in chunked(keys, PRESENCE_BATCH):
            (Presence.insert_many([{"kind": kind, "workspace_id": workspace_id,
                                    "subject_id": subject_id, "seen_at": now,
                                    "stream_id": stream_id(kind, workspace_id, subject_id)}
                                   for kind, workspace_id, subject_id in batch])
             .on_conflict(conflict_target=[Presence.stream_id], update={Presence.seen_at: now})
             .execute())


KEEP_ALIVE = b": \r\n\r\n"  # an SSE comment: what a stream without a status line sends


class Batch:
    """Runs jobs in a worker thread, together: the jobs queued while one hop runs go in the
    next, all in one hop. Streams opening at the same moment (a restart brings back a thousand)
    then share their thread hops instead of paying one each, which was most of an open's CPU."""

    def __init__(self):
        self.waiting = []
        self.task = None

    async def run(self, job):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((job, future))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._drain())
        return await future

    async def _drain(self):
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                outcomes = await anyio.to_thread.run_sync(self._run_all, [job for job, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stopped"))
                raise
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if not future.done():  # (its stream may have gone meanwhile)
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    @staticmethod
    def _run_all(jobs) -> list:
        outcomes = []
        for job in jobs:
            try:
                outcomes.append((True, job()))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes


_openings = weakref.WeakKeyDictionary()  # hub -> its Batch of opening streams


class Opened:
    """A stream admitted by admit(): subscribed, counted present, its first bytes ready."""
    __slots__ = ("hub", "sub", "presence", "first", "after", "closed")

    def __init__(self, hub, sub, presence, first, after):
        self.hub, self.sub, self.presence, self.first, self.after = hub, sub, presence, first, after
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.unsubscribe(self.sub)
            self.hub.leave(self.presence)


async def admit(hub, after: int, presence: tuple, check=None, heartbeat=None, allowed=None,
                workspace_id=None, conversation_id=None, recheck_seconds=HEARTBEAT_SECONDS,
                beat_every=HEARTBEAT_SECONDS, language=None):
    """Open a stream of a workspace (an agent's) or of one of its conversations (a
    visitor's): subscribe, then in one worker thread hop (shared with the other streams
    opening at that moment, see Batch) ask `check()` (false: refused, None is returned), render
    the first status line (`heartbeat`) and replay what came after `after`. Returns an Opened.

    `presence`: the key counted present while the stream is open (or a function returning it,
    asked after check()).

    Subscribed before the replay query, so nothing falls between the two; replayed in pages
    until caught up with what the subscription has queued. When the hub did not follow the
    workspace yet, the hop first reads the workspace's counter, and the hub follows on from
    there (live.Hub.begin). The hub's ticker then puts a heartbeat in the queue every
    `beat_every` seconds and asks `allowed()` about every `recheck_seconds`, putting END in
    the queue when it says no. `language`: a visitor's stream's (live.visitor_audience)."""
    sub = hub.subscribe(workspace_id, conversation_id=conversation_id,
                        allowed=allowed, heartbeat=heartbeat, beat_every=beat_every,
                        check_every=recheck_seconds, language=language)
    audience = sub.audience

    def replayed(last, first):
        while True:
            rows = replay(last, workspace_id, conversation_id)
            for row, data in zip(rows, hub.replay_rendered(rows, audience), strict=True):
                last = row.seq
                if data is not None:
                    first.append(data)
            if len(rows) < REPLAY_LIMIT:
                return last

    def opening():
        if check is not None and not check():
            return None
        first = [heartbeat()] if heartbeat is not None else []
        start = None if sub.known else workspace_seq(workspace_id)  # before the replay
        return first, replayed(after, first), start

    batch = _openings.get(hub)
    if batch is None:
        batch = _openings[hub] = Batch()
    try:
        done = await batch.run(opening)
        if done is not None and done[2] is not None and hub.begin(workspace_id, done[2]) > done[2]:
            # Another stream started the hub's following of this workspace past where this
            # one's replay was sure to reach: replay again, up to now.
            first, last, _ = done
            done = first, await batch.run(lambda: replayed(last, first)), None
    except BaseException:
        hub.unsubscribe(sub)
        raise
    if done is None:
        hub.unsubscribe(sub)
        return None
    if callable(presence):
        presence = presence()  # a key that check() has just learned
    hub.arrive(presence)
    return Opened(hub, sub, presence, done[0], done[1])


async def follow_opened(opened: Opened):
    """The SSE bytes of an admitted stream: its first bytes, then what the hub queues for it,
    skipping anything the replay already sent. The stream renders nothing itself: each event
    was rendered once for its audience before the hub queued it (in the chat writer's batch
    for this process's writes, by the dispatcher for what it read back) and every stream
    writes those same bytes. Ends at END (its check said no, or its browser went) and closes
    `opened`."""
    sub, after, audience = opened.sub, opened.after, opened.sub.audience
    try:
        for data in opened.first:
            yield data
        opened.first = ()
        while not sub.dropped:
            item = await sub.queue.get()
            if item is live.END:
                return
            if isinstance(item, live.Beat):
                yield KEEP_ALIVE if item.data is None else item.data
                continue
            if item.seq <= after:
                continue  # already sent by the replay
            after = item.seq
            if (data := item.sse.get(audience)) is not None:
                yield data
    finally:
        opened.close()


async def follow(hub, after: int, presence: tuple, heartbeat=None, allowed=None,
                 workspace_id=None, conversation_id=None, recheck_seconds=HEARTBEAT_SECONDS,
                 beat_every=HEARTBEAT_SECONDS):
    """admit() and follow_opened() as one generator of SSE bytes (a stream opened in code)."""
    opened = await admit(hub, after, presence, heartbeat=heartbeat, allowed=allowed,
                         workspace_id=workspace_id, conversation_id=conversation_id,
                         recheck_seconds=recheck_seconds, beat_every=beat_every)
    events = follow_opened(opened)
    try:
        async for data in events:
            yield data
    finally:
        await events.aclose()
        opened.close()


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
    """A streaming ASGI response for an admitted stream (see admit()): one coroutine writes
    the bytes follow_opened() yields, and one small task waits for the browser to go
    (http.disconnect), then ends the stream through its subscriber's queue. In place of
    sse-starlette's EventSourceResponse, which keeps a task group of four tasks per stream
    (the stream, a disconnect listener, a server-exit listener, a ping timer): at thousands of
    idle streams that was most of their memory (tests/bench/stream_cost.py measures it).
    Heartbeats come from the hub's ticker."""

    def __init__(self, opened: Opened):
        self.opened = opened

    async def __call__(self, scope, receive, send):
        opened = self.opened
        watcher = None
        events = follow_opened(opened)

        async def until_gone(sub):
            while (await receive())["type"] != "http.disconnect":
                pass
            sub.put(live.END)

        try:
            watcher = asyncio.ensure_future(until_gone(opened.sub))
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
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
            opened.close()  # (when the stream ended before its first byte)


def session_user(flask_app, cookie: str | None):
    """(user, membership) of a Flask session cookie, checked exactly as a Flask request is."""
    found = sessions.from_cookie(flask_app, cookie)
    return (found[1].user, found[2]) if found else None


def routes(flask_app, hub) -> dict:
    """The two stream endpoints (Starlette request → ASGI response), by path: an agent's
    workspace and a visitor's conversation."""
    cookie_name = flask_app.config["SESSION_COOKIE_NAME"]
    status_line = status_heartbeat(flask_app)  # one for all: rendered once per beat

    async def dashboard_stream(request):
        found = await anyio.to_thread.run_sync(session_user, flask_app, request.cookies.get(cookie_name))
        if found is None:
            return PlainTextResponse("Log in to receive live updates.", status_code=401)
        user, membership = found
        cookie = request.cookies.get(cookie_name)

        def still_allowed():
            again = session_user(flask_app, cookie)
            return again is not None and again[1].workspace_id == membership.workspace_id

        presence = ("agent", membership.workspace_id, user.id)
        opened = await admit(
            hub, parse_after(request), presence, heartbeat=status_line,
            allowed=still_allowed, workspace_id=membership.workspace_id)
        return EventStream(opened)

    async def visitor_stream(request):
        ticket = request.query_params.get("ticket", "")
        # The signature is checked here, on the loop (microseconds): the conversation it names
        # is then known before the one thread hop that checks it still exists and replays.
        with flask_app.app_context():
            claim = widget_service.read_stream_ticket(ticket) if ticket else None
        conversation_id = claim.get("c") if isinstance(claim, dict) else None
        scope = None

        fresh = claim

        def check():
            nonlocal scope, fresh
            with flask_app.app_context():
                # The first check (in the open's hop) uses the claim just read; later rechecks
                # read the ticket again, so its expiry still ends the stream.
                scope = widget_service.visitor_stream_scope(ticket, fresh)
            fresh = None
            return scope is not None and scope[1] == conversation_id

        opened = workspace_id = None
        if isinstance(conversation_id, int):
            workspace_id = claim.get("w")
            if not isinstance(workspace_id, int):
                # A ticket from before tickets named the workspace: checked first to learn it.
                workspace_id = scope[0] if await anyio.to_thread.run_sync(check) else None
        if isinstance(conversation_id, int) and workspace_id is not None:
            opened = await admit(
                hub, parse_after(request), lambda: ("visitor", scope[0], conversation_id), check=check,
                allowed=check, workspace_id=workspace_id, conversation_id=conversation_id,
                recheck_seconds=VISITOR_RECHECK_SECONDS,
                beat_every=VISITOR_HEARTBEAT_SECONDS,
                language=widget_language.known(claim.get("l")))
        if opened is None:
            return PlainTextResponse("This chat link is not valid any more.", status_code=403)
        return EventStream(opened)

    return {"/sse/dashboard": dashboard_stream, "/sse/visitor": visitor_stream}
