"""The per-process dispatcher: one reader of new chat events that fans them out to streams.

This process's chat writes are handed over from memory once committed: the chat writer's
batch renders its events on the event loop right after its commit and gives them to the hub
(Hub.prepare, Hub.accept; app/chat/writer.py), and a write committed outside the writer
does the same from its own thread (publish()). Nothing is read back for them. Other writes
of this process commit, then call `notify()`, which wakes the dispatcher at once. Commits
made by other processes (the Huey worker, a second web process) are noticed by watching
`PRAGMA data_version` on a dedicated read-only connection: it changes whenever another
connection commits and costs microseconds to read, so the dispatcher checks it every
WATCH_INTERVAL (IDLE_INTERVAL once quiet) instead of every client polling the database, and
reads and renders what is new. (PostgreSQL counterpart: LISTEN/NOTIFY.)
"""

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import random
import secrets
import sqlite3
import threading
import time
from collections import Counter, OrderedDict, defaultdict

import anyio

WATCH_INTERVAL = 0.05  # seconds between data_version checks while chats are active: this
# process's own writes are published from memory (or wake the dispatcher at once), so the
# watch is for other processes' writes only
POLL_SECONDS = 1.0  # PostgreSQL's watcher (PollWatch): how often it asks
IDLE_INTERVAL = 0.1  # ... and once nothing has changed for IDLE_AFTER seconds
IDLE_AFTER = 5.0
PRESENCE_EVERY = 15.0  # seconds between refreshes of this process's presence rows
PRESENCE_GATHER = 0.1  # arrivals and leaves within this long are written together
QUEUE_LIMIT = 2000  # a stream this far behind is dropped; its browser reconnects and replays
RENDER_CACHE = 2048  # recent (audience, event id) renderings, for streams that replay them
TICK = 1.0  # seconds between the hub's heartbeat and permission-check rounds
CHECK_BATCH = 200  # permission checks run together in one thread hop

_hub = None
_hub_lock = threading.Lock()
log = logging.getLogger(__name__)


def notify() -> None:
    """Called after a commit, from any thread: wake this process's dispatcher if it runs."""
    hub = _hub
    if hub is not None:
        hub.wake_threadsafe()


class Written:
    """An event this process has just committed, with what its write already holds (the
    message object), so that it is published from memory instead of read back."""
    __slots__ = ("id", "workspace_id", "conversation_id", "kind", "ref_id", "actor", "message",
                 "conversation")

    def __init__(self, id, workspace_id, conversation_id, kind, ref_id=None, actor="",
                 message=None, conversation=None):
        self.id, self.workspace_id, self.conversation_id = id, workspace_id, conversation_id
        self.kind, self.ref_id, self.actor, self.message = kind, ref_id, actor, message
        self.conversation = conversation  # with its visitor and site, as the write left it


def publish(written: list) -> None:
    """Called after the commit of a chat write made outside the chat writer's batch (which
    hands its events over itself), from the writing thread: render the events there, once per
    audience watching, and hand them to this process's streams (see Hub.publish)."""
    hub = _hub
    if hub is not None and written:
        hub.publish(written)


# --- inside the chat writer's batch (app/chat/writer.py) -----------------------------------

class Collector:
    """What the jobs of one writer batch leave for after its commit."""
    __slots__ = ("written", "after")

    def __init__(self):
        self.written = []  # live.Written, to publish once committed
        self.after = []  # callables, run once committed


_batch = threading.local()


@contextlib.contextmanager
def collecting(collector: Collector):
    """This thread's writes publish into `collector` instead of at once (the writer's batch)."""
    _batch.collector = collector
    try:
        yield collector
    finally:
        _batch.collector = None


def deferred(written: list) -> bool:
    """Inside a writer batch: keep `written` for the batch's publish after its commit (True).
    Elsewhere False: the caller publishes itself."""
    collector = getattr(_batch, "collector", None)
    if collector is None:
        return False
    collector.written.extend(written)
    return True


def after_commit(action) -> None:
    """Run `action()` once this thread's chat write is committed: at once outside a writer
    batch (the caller has committed already), after the batch's commit inside one. Used for
    what must not see an uncommitted write (a task queued for the worker, automations)."""
    collector = getattr(_batch, "collector", None)
    if collector is None:
        action()
    else:
        collector.after.append(action)


class Beat:
    """Put in a subscriber's queue by the hub's ticker: time for a heartbeat. `data` is the
    status line as SSE bytes, rendered once per round for every stream that shows one."""
    __slots__ = ("data",)

    def __init__(self, data=None):
        self.data = data


END = object()  # put in a subscriber's queue when its permission check said no
BEAT, CHECK = 0, 1  # what falls due on the ticker's agenda
AGENT, VISITOR = "agent", "visitor"  # a workspace's streams are agents', a conversation's visitors'


class Event:
    """A chat event as the dispatcher hands it out: the row's fields and `sse`, its bytes
    for each audience (None: nothing to show that audience). One object for every stream."""
    __slots__ = ("id", "workspace_id", "conversation_id", "kind", "ref_id", "actor", "sse")

    def __init__(self, row, sse):
        self.id, self.workspace_id, self.conversation_id = row.id, row.workspace_id, row.conversation_id
        self.kind, self.ref_id, self.actor = row.kind, row.ref_id, row.actor
        self.sse = sse


class Subscriber:
    __slots__ = ("workspace_id", "conversation_id", "audience", "queue", "dropped", "allowed",
                 "heartbeat", "beat_every", "beat_at", "check_every", "check_at")

    def __init__(self, workspace_id=None, conversation_id=None, allowed=None, heartbeat=None,
                 beat_every=15.0, check_every=15.0):
        self.workspace_id = workspace_id
        self.conversation_id = conversation_id
        self.audience = VISITOR if conversation_id is not None else AGENT
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.dropped = False
        self.allowed = allowed  # () -> bool, asked in a worker thread every check_every
        self.heartbeat = heartbeat  # () -> status line, or None for a bare keep-alive
        # First beat and check at a random point of their period: a thousand streams opened
        # together (a restart) then spread their work instead of doing it all at once.
        now = time.monotonic()
        self.beat_every = beat_every
        self.beat_at = now + beat_every * random.uniform(0.5, 1.0)
        self.check_every = check_every
        self.check_at = now + check_every * random.uniform(0.5, 1.0)

    def put(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped = True  # the stream ends at its next item; its browser replays


class FileWatch:
    """Another process's commits to the SQLite file: `PRAGMA data_version` on a read-only
    connection of its own changes when any other connection commits (~10 µs to ask)."""

    every = (WATCH_INTERVAL, IDLE_INTERVAL)  # while active, once idle

    def __init__(self, path: str):
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                    isolation_level=None)

    def version(self):
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def newest(self):
        return self.conn.execute("SELECT max(id) FROM chat_event").fetchone()[0]

    def close(self):
        self.conn.close()


class PollWatch(FileWatch):
    """PostgreSQL has no data_version: the newest event id, asked every POLL_SECONDS on a
    connection of its own, is the version. (Wake-ups over Redis between web processes are
    still to come: until then another process's events arrive within POLL_SECONDS.)"""

    every = (POLL_SECONDS, POLL_SECONDS)

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def version(self):
        return self.newest()


def watcher(database: str):
    return PollWatch(database) if database.startswith("postgresql://") else FileWatch(database)


class Hub:
    def __init__(self, database_path: str, fetch_after, max_id, presence=None, render=None):
        self.database_path = database_path
        self.fetch_after = fetch_after  # (last_id) -> list of event rows, in a thread
        self.max_id = max_id
        # [(row, audiences)] -> [{audience: SSE bytes or None}] (render.Renderer.events), called
        # by render() wherever events are rendered; None: events carry no bytes (hub-only tests).
        self.render_events = render
        self.renders = Counter()  # (audience, event id) -> times rendered: once, if all is well
        # (process_id, keys to write, keys to delete) -> None, in a thread; see arrive().
        self.presence = presence
        self.process_id = secrets.token_hex(8)
        self.present = {}  # (kind, workspace_id, subject_id) -> open streams in this process
        self.arrived = set()  # keys whose row is still to be written ...
        self.left = set()  # ... or deleted, by the next presence round
        self.presence_due = None
        self.tasks = []
        self.by_workspace = defaultdict(set)
        self.by_conversation = defaultdict(set)
        self.last_id = 0
        self.loop = None
        self.wake = None
        self.task = None
        self.rendered = OrderedDict()  # (audience, event id) -> SSE bytes or None
        self.agenda = []  # heap of the streams' next heartbeats and checks; see _due()
        self.stale = 0  # agenda entries of streams that have gone
        self.order = itertools.count()
        # Events published from memory that wait for an earlier id (another process's event,
        # or another thread's publish still on its way): event id -> Event.
        self.pending = {}
        self.read_back = 0  # events the dispatcher read from the database and rendered itself
        self.announced = 0  # the newest event id a publish from memory is bringing

    # -- rendering: once per (event, audience) ----------------------------------------------------
    def render(self, wanted) -> list[dict]:
        """[(row, audiences)] -> [{audience: bytes or None}], counted in `renders`. Called on
        the loop inside the chat writer's batch (prepare), from the thread that committed a
        write outside it (publish), or in a worker thread (the dispatcher's hop, a stream's
        replay)."""
        if self.render_events is None:
            return [{} for _ in wanted]
        for row, audiences in wanted:
            for audience in audiences:
                self.renders[(audience, row.id)] += 1
        # Only recent events are counted: a long-lived process must not keep a key per event
        # (a leak, and objects for every full garbage collection to walk).
        while len(self.renders) > 2 * RENDER_CACHE:
            self.renders.pop(next(iter(self.renders)), None)
        return self.render_events(wanted)

    def remember(self, events) -> None:
        """Keep recent renderings (on the loop), for streams that replay those events."""
        for event in events:
            for audience, data in event.sse.items():
                self.rendered[(audience, event.id)] = data
        while len(self.rendered) > RENDER_CACHE:
            self.rendered.popitem(last=False)

    def replay_rendered(self, rows, audience: str) -> list:
        """Bytes for each replayed row: the dispatcher's rendering when still kept, else
        rendered now. In a worker thread (a dict read is safe there: the loop only adds)."""
        found = [self.rendered.get((audience, row.id), self) for row in rows]
        missing = [row for row, data in zip(rows, found, strict=True) if data is self]
        if missing:
            made = iter(self.render([(row, (audience,)) for row in missing]))
            found = [next(made).get(audience) if data is self else data for data in found]
        return found

    def _audiences(self, row) -> tuple:
        # Read off the loop too (the dispatcher's hop, a publishing thread): a dict lookup is
        # atomic. A stream subscribing meanwhile is caught on the loop afterwards (dispatch
        # renders what it is owed; _drain leaves such an event to the dispatcher).
        agent = bool(self.by_workspace.get(row.workspace_id))
        visitor = bool(self.by_conversation.get(row.conversation_id))
        return (AGENT,) * agent + (VISITOR,) * visitor

    def _fetch_rendered(self, last_id: int) -> list[Event]:
        rows = self.fetch_after(last_id)
        # An event published from memory is already rendered: only the rest is (a dict read
        # from this thread is safe; the loop only adds and removes whole entries).
        known = {row.id: self._published(row) for row in rows}
        fresh = [row for row in rows if known[row.id] is None]
        self.read_back += len(fresh)
        made = iter(self.render([(row, self._audiences(row)) for row in fresh]))
        return [known[row.id] or Event(row, next(made)) for row in rows]

    def _published(self, row):
        """The Event published from memory for this row, if one is waiting (and is this very
        row: an id whose transaction was undone can be taken by another event)."""
        event = self.pending.get(row.id)
        if event is not None and (event.kind, event.ref_id, event.conversation_id) == (
                row.kind, row.ref_id, row.conversation_id):
            return event
        return None

    # -- publishing from memory ------------------------------------------------------------------
    def publish(self, written: list) -> None:
        """From the thread that committed `written` (live.Written, ids ascending): render each
        event once per audience watching, then hand them to the loop. No read back, no hop."""
        events = self.prepare(written)
        if events:
            try:
                self.loop.call_soon_threadsafe(self.accept, events)
            except RuntimeError:
                pass  # the loop is closing

    def prepare(self, written: list) -> list:
        """`written` rendered once per audience watching, as Events for accept() on the loop;
        [] when the hub is not running or rendering failed (the dispatcher then reads them).
        Called by the chat writer on the loop right after its batch's commit, and by publish()."""
        if self.loop is None or not written:
            return []
        # Announced before rendering, so that the watcher, seeing the commit meanwhile, leaves
        # these to this publish instead of reading them back (an int store is atomic).
        self.announced = max(self.announced, max(row.id for row in written))
        written = sorted(written, key=lambda row: row.id)
        wanted = [(row, self._audiences(row)) for row in written]
        try:
            return [Event(row, sse) for row, sse in zip(written, self.render(wanted), strict=True)]
        except Exception:
            log.exception("chat event not rendered from memory; the dispatcher reads it")
            self.wake_threadsafe()
            return []

    def accept(self, events: list) -> None:
        for event in events:
            if event.id > self.last_id:
                self.pending[event.id] = event
        if self._drain():
            self.wake.set()  # a gap: the dispatcher reads what fills it

    def _drain(self) -> bool:
        """Deliver pending events while they follow on from the last one delivered. A gap (an
        event of another process, or another thread's publish not arrived yet) is left to the
        dispatcher, which reads it and delivers everything in order: nothing skipped."""
        while (event := self.pending.get(self.last_id + 1)) is not None:
            if any(a not in event.sse for a in self._audiences(event)):
                break  # a stream subscribed since it was rendered: the dispatcher renders it
            del self.pending[event.id]
            self._deliver([event])
        return bool(self.pending)

    def _deliver(self, events: list) -> None:
        self.remember(events)
        for event in events:
            self.last_id = event.id
            for sub in self.by_workspace.get(event.workspace_id, ()):
                sub.put(event)
            for sub in self.by_conversation.get(event.conversation_id, ()):
                sub.put(event)

    # -- subscribers ---------------------------------------------------------------------------
    def subscribe(self, workspace_id=None, conversation_id=None, **timers) -> Subscriber:
        """`timers`: allowed, heartbeat, beat_every, check_every (see Subscriber)."""
        sub = Subscriber(workspace_id, conversation_id, **timers)
        if conversation_id is not None:
            self.by_conversation[conversation_id].add(sub)
        else:
            self.by_workspace[workspace_id].add(sub)
        self._due(sub.beat_at, BEAT, sub)
        if sub.allowed is not None:
            self._due(sub.check_at, CHECK, sub)
        return sub

    def _due(self, at: float, what: int, sub: Subscriber) -> None:
        # The ticker's agenda: (due time, order, what, subscriber). A stream that has gone is
        # dropped when its entry comes up (see tick), not searched for when it leaves.
        heapq.heappush(self.agenda, (at, next(self.order), what, sub))

    def subscribed(self, sub: Subscriber) -> bool:
        group = (self.by_conversation.get(sub.conversation_id) if sub.conversation_id is not None
                 else self.by_workspace.get(sub.workspace_id))
        return group is not None and sub in group

    def unsubscribe(self, sub: Subscriber) -> None:
        group = (self.by_conversation.get(sub.conversation_id) if sub.conversation_id is not None
                 else self.by_workspace.get(sub.workspace_id))
        if group is not None and sub in group:
            group.discard(sub)
            if not group:
                key = sub.conversation_id if sub.conversation_id is not None else sub.workspace_id
                (self.by_conversation if sub.conversation_id is not None else self.by_workspace).pop(key, None)
            # Its agenda entries stay until due (minutes for a check); when they are most of the
            # agenda (many streams came and went), it is rebuilt without them, so streams that
            # have gone are not kept in memory.
            self.stale += 1 + (sub.allowed is not None)
            if self.stale > 64 + len(self.agenda) // 2:
                self.agenda = [entry for entry in self.agenda if self.subscribed(entry[3])]
                heapq.heapify(self.agenda)
                self.stale = 0

    def subscribers(self):
        for group in (self.by_workspace, self.by_conversation):
            for subs in group.values():
                yield from subs

    @property
    def subscriber_count(self) -> int:
        return sum(map(len, self.by_workspace.values())) + sum(map(len, self.by_conversation.values()))

    # -- presence: who is here, shared with other processes through the database -------------
    # One row per (process, kind, workspace, subject). A stream's arrival or leaving only marks
    # its key; one task writes what was marked every PRESENCE_GATHER seconds, and refreshes
    # every row every PRESENCE_EVERY seconds, each round in one short transaction of batched
    # statements. A thousand browsers reconnecting at once after a restart then cost a few
    # writes, not a thousand transactions queued for the write lock ahead of the messages.
    def arrive(self, key) -> None:
        count = self.present.get(key, 0)
        self.present[key] = count + 1
        if count == 0:
            self.left.discard(key)
            self.arrived.add(key)
            self._presence_changed()

    def leave(self, key) -> None:
        count = self.present.get(key, 0) - 1
        if count > 0:
            self.present[key] = count
            return
        self.present.pop(key, None)
        self.arrived.discard(key)
        self.left.add(key)
        self._presence_changed()

    def _presence_changed(self) -> None:
        if self.presence_due is not None:
            self.presence_due.set()

    async def write_presence(self, refresh: bool = False) -> None:
        """Write what arrived and delete what left (every present key when `refresh`: the
        presence callable is then told so, and may refresh them all in one statement)."""
        if self.presence is None:
            self.arrived.clear()
            self.left.clear()
            return
        keys = list(self.present) if refresh else list(self.arrived)
        gone = list(self.left)
        self.arrived.clear()
        self.left.clear()
        if not keys and not gone:
            return
        try:
            if refresh:
                await anyio.to_thread.run_sync(
                    functools.partial(self.presence, self.process_id, keys, gone, refresh=True))
            else:
                await anyio.to_thread.run_sync(self.presence, self.process_id, keys, gone)
        except Exception:
            # The database said no (locked past its timeout): try these again next round.
            log.exception("presence not written; retrying")
            self.arrived.update(k for k in keys if k in self.present)
            self.left.update(k for k in gone if k not in self.present)
            await asyncio.sleep(1)

    async def keep_presence(self) -> None:
        next_refresh = time.monotonic() + PRESENCE_EVERY
        while True:
            # asyncio.timeout(), not wait_for(): Python 3.11's wait_for() drops a cancellation
            # that lands as the event fires (a stream arriving as the hub stops), and stop()
            # then waits for this task forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_refresh - time.monotonic())):
                    await self.presence_due.wait()
            self.presence_due.clear()
            await asyncio.sleep(PRESENCE_GATHER)  # let the rest of a burst arrive
            refresh = time.monotonic() >= next_refresh
            if refresh:
                next_refresh = time.monotonic() + PRESENCE_EVERY
            await self.write_presence(refresh)

    # -- heartbeats and permission checks: one timer for the whole process -------------------
    async def tick(self) -> None:
        """Every TICK: queue a heartbeat for the streams due one (each status line rendered
        once per round) and ask the due streams' permission checks, CHECK_BATCH per thread
        hop; a stream whose check says no is sent END. No stream keeps a timer of its own, and
        a round touches only the streams due (the agenda is a heap by due time): at thousands
        of idle streams, walking them all every second was most of the idle CPU."""
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            beats, checks = defaultdict(list), []
            agenda = self.agenda
            while agenda and agenda[0][0] <= now:
                at, _, what, sub = heapq.heappop(agenda)
                if at != (sub.beat_at if what is BEAT else sub.check_at) or not self.subscribed(sub):
                    continue  # moved (a check retried sooner) or gone since
                if what is BEAT:
                    sub.beat_at = now + sub.beat_every
                    self._due(sub.beat_at, BEAT, sub)
                    beats[sub.heartbeat].append(sub)
                else:
                    sub.check_at = now + sub.check_every * random.uniform(0.75, 1.25)
                    self._due(sub.check_at, CHECK, sub)
                    checks.append(sub)
            if beats:
                makers = [make for make in beats if make is not None]
                try:
                    lines = await anyio.to_thread.run_sync(self._render, makers)
                except Exception:
                    log.exception("status line not rendered")
                    lines = [None] * len(makers)
                data = dict(zip(makers, lines, strict=True))
                for make, subs in beats.items():
                    beat = Beat(data.get(make))
                    for sub in subs:
                        sub.put(beat)
            for start in range(0, len(checks), CHECK_BATCH):
                batch = checks[start:start + CHECK_BATCH]
                answers = await anyio.to_thread.run_sync(self._ask, batch)
                for sub, answer in zip(batch, answers, strict=True):
                    if answer is False:
                        sub.put(END)
                    elif answer is None:
                        self._due(sub.check_at, CHECK, sub)  # not known: asked again sooner

    @staticmethod
    def _render(makers) -> list:
        return [make() for make in makers]

    @staticmethod
    def _ask(batch) -> list:
        answers = []
        for sub in batch:
            try:
                answers.append(bool(sub.allowed()))
            except Exception:
                # Not known now (the database busy): asked again in a few seconds.
                log.exception("stream permission not checked")
                sub.check_at = time.monotonic() + 5 * TICK  # put on the agenda by tick()
                answers.append(None)
        return answers

    # -- the loop ------------------------------------------------------------------------------
    def wake_threadsafe(self) -> None:
        if self.loop is not None and self.wake is not None:
            try:
                self.loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:
                pass  # the loop is closing

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.presence_due = asyncio.Event()
        self.last_id = await anyio.to_thread.run_sync(self.max_id)
        self.task = asyncio.create_task(self.run(), name="chat-dispatcher")
        self.tasks = [asyncio.create_task(self.keep_presence(), name="chat-presence"),
                      asyncio.create_task(self.tick(), name="chat-ticker")]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.presence is not None:
            self.left.update(self.present)
            self.arrived.clear()
            await self.write_presence()
        if self.task is not None:
            # Python 3.11's wait_for() drops a cancellation that lands as the wake event
            # fires (a notify() during shutdown): cancel again until the task has ended.
            while not self.task.done():
                self.task.cancel()
                await asyncio.wait({self.task}, timeout=0.1)
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        watch = watcher(self.database_path)
        try:
            version = watch.version()
            last_change = time.monotonic()
            while True:
                idle = time.monotonic() - last_change > IDLE_AFTER
                try:
                    await asyncio.wait_for(self.wake.wait(), watch.every[idle])
                    woken = True
                except TimeoutError:
                    woken = False
                self.wake.clear()
                current = watch.version()
                if not woken and current == version:
                    continue
                version = current
                if not woken and not self.pending:
                    # Most commits seen here are this process's own chat writes, already
                    # published from memory: read back only when an event is newer.
                    if (watch.newest() or 0) <= max(self.last_id, self.announced):
                        continue
                last_change = time.monotonic()
                await self.dispatch()
        finally:
            watch.close()

    async def dispatch(self) -> None:
        """Read what is new and render what was not published from memory once per audience
        watching, in one thread hop; then hand every subscriber the same Event (the streams
        write its bytes as they are)."""
        while True:
            events = await anyio.to_thread.run_sync(self._fetch_rendered, self.last_id)
            late = [(event, audiences) for event in events
                    if (audiences := tuple(a for a in self._audiences(event) if a not in event.sse))]
            if late and self.render_events is not None:
                # Streams that subscribed while the hop ran: render what they are owed.
                made = await anyio.to_thread.run_sync(self.render, late)
                for (event, _), sse in zip(late, made, strict=True):
                    event.sse.update(sse)
            fetched = len(events)
            self._deliver([event for event in events if event.id > self.last_id])
            for event_id in [i for i in self.pending if i <= self.last_id]:
                del self.pending[event_id]
            self._drain()
            # Anything still pending was committed after this read began: the watcher's next
            # round (every WATCH_INTERVAL while something is pending) reads it.
            if fetched < 500:
                return


def install(hub: Hub) -> None:
    global _hub
    with _hub_lock:
        _hub = hub


def uninstall() -> None:
    global _hub
    with _hub_lock:
        _hub = None
