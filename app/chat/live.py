"""The per-process dispatcher: one reader of new chat events that fans them out to streams.

Events are numbered per workspace in commit order (app/chat/events.py, `seq`), with no gaps;
the hub keeps, for each workspace it has streams for, the number it has delivered up to, and
hands every stream of that workspace the events after it, in order.

This process's chat writes are handed over from memory once committed: the chat writer's
batch renders its events on the event loop right after its commit and gives them to the hub
(Hub.prepare, Hub.accept; app/chat/writer.py), and a write committed outside the writer does
the same from its own thread (publish()). Nothing is read back for them; an event that
arrives ahead of its predecessor waits for it (a gap: the dispatcher reads what fills it).
Commits of other processes (the Huey worker, more web processes) are noticed by the watcher:
on SQLite, `PRAGMA data_version` on a read-only connection of its own changes when any other
connection commits and costs microseconds to read; on PostgreSQL, wake-ups over Redis
pub/sub (app/chat/wakeups.py) and a poll of the workspaces' counters. Either way the
dispatcher then asks the counters of the workspaces it watches which have moved on, and reads
only those.
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

from app.chat import wakeups

WATCH_INTERVAL = 0.05  # seconds between data_version checks while chats are active: this
# process's own writes are published from memory (or wake the dispatcher at once), so the
# watch is for other processes' writes only
POLL_SECONDS = 1.0  # PostgreSQL: how often the counters are asked while Redis is away ...
SAFETY_POLL_SECONDS = 2.0  # ... and while its wake-ups arrive (one may be lost: at most once)
IDLE_INTERVAL = 0.1  # ... and once nothing has changed for IDLE_AFTER seconds
IDLE_AFTER = 5.0
PRESENCE_EVERY = 15.0  # seconds between refreshes of this process's presence rows
PRESENCE_GATHER = 0.1  # arrivals and leaves within this long are written together
QUEUE_LIMIT = 2000  # a stream this far behind is dropped; its browser reconnects and replays
RENDER_CACHE = 2048  # recent (audience, workspace, seq) renderings, for streams that replay them
TICK = 1.0  # seconds between the hub's heartbeat and permission-check rounds
CHECK_BATCH = 200  # permission checks run together in one thread hop
READ_LIMIT = 1000  # events read for one workspace in one go (the dispatcher, a replay)
COUNTERS_PER_QUERY = 500  # workspaces whose counters one statement asks
WATCH_NAME = "lumnar-chat-watch"  # PostgreSQL's application_name of the watcher's connection

_hub = None
_hub_lock = threading.Lock()
_told = threading.local()  # (workspace, seq) numbered by this thread and not yet told
log = logging.getLogger(__name__)


def told(workspace_id: int, seq: int) -> None:
    """An event numbered by this thread outside the chat writer (app/chat/events.py): other
    processes hear of it at this thread's next notify() or publish(), once committed."""
    pending = getattr(_told, "pending", None)
    if pending is None:
        pending = _told.pending = []
    pending.append((workspace_id, seq))


def _take_told() -> list:
    pending = getattr(_told, "pending", None)
    _told.pending = []
    return pending or []


def notify() -> None:
    """Called after a commit, from any thread: wake this process's dispatcher if it runs (it
    asks the counters of the workspaces it watches), and tell the other processes."""
    wakeups.announce(_take_told())
    hub = _hub
    if hub is not None:
        hub.wake_threadsafe(check=True)


def wake() -> None:
    """Wake this process's dispatcher to ask the counters, telling no other process: for a
    write whose transaction is still open (they hear of it at the thread's next notify(),
    or find it at their next poll)."""
    hub = _hub
    if hub is not None:
        hub.wake_threadsafe(check=True)


class Written:
    """An event this process has just written, with what its write already holds (the message
    object), so that it is published from memory instead of read back. `seq` is set when it is
    numbered (app/chat/events.py)."""
    __slots__ = ("seq", "workspace_id", "conversation_id", "kind", "ref_id", "actor", "message",
                 "conversation")

    def __init__(self, seq, workspace_id, conversation_id, kind, ref_id=None, actor="",
                 message=None, conversation=None):
        self.seq, self.workspace_id, self.conversation_id = seq, workspace_id, conversation_id
        self.kind, self.ref_id, self.actor, self.message = kind, ref_id, actor, message
        self.conversation = conversation  # with its visitor and site, as the write left it


def publish(written: list) -> None:
    """Called after the commit of a chat write made outside the chat writer's batch (which
    hands its events over itself), from the writing thread: render the events there, once per
    audience watching, and hand them to this process's streams (see Hub.publish); tell the
    other processes."""
    hub = _hub
    if hub is not None and written:
        hub.publish(written)  # first: its numbers are then known here as on their way
    wakeups.announce(_take_told())


# --- inside the chat writer's batch (app/chat/writer.py) -----------------------------------

class Collector:
    """What the jobs of one writer batch leave for after its commit."""
    __slots__ = ("written", "after")

    def __init__(self):
        self.written = []  # live.Written, numbered and stored right before the commit
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


def batching() -> bool:
    """Whether this thread is running a chat writer batch's jobs."""
    return getattr(_batch, "collector", None) is not None


def deferred(written: list) -> bool:
    """Inside a writer batch: keep `written` for the batch, which numbers and stores them
    right before its commit and publishes them after it (True). Elsewhere False: the caller
    has stored them and publishes itself."""
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


def visitor_audience(language: str | None) -> str:
    """A visitor's stream hears the chat in the language the widget was shown in: each language
    watching a conversation is an audience of its own ("visitor" for English, "visitor:fr")."""
    return VISITOR if not language or language == "en" else f"{VISITOR}:{language}"


def audience_language(audience: str) -> str:
    return audience.partition(":")[2] or "en"


class Event:
    """A chat event as the dispatcher hands it out: the row's fields and `sse`, its bytes
    for each audience (None: nothing to show that audience). One object for every stream."""
    __slots__ = ("seq", "workspace_id", "conversation_id", "kind", "ref_id", "actor", "sse",
                 "conversation_ids")

    def __init__(self, row, sse):
        self.seq, self.workspace_id, self.conversation_id = row.seq, row.workspace_id, row.conversation_id
        self.kind, self.ref_id, self.actor = row.kind, row.ref_id, row.actor
        self.sse = sse
        # Deletions read back together (see Deletions): every conversation they name.
        self.conversation_ids = getattr(row, "conversation_ids", None)


DELETED = "deleted"  # app.chat.models.ChatEvent.DELETED (this module imports no models)


class Deletions:
    """A run of deletions of one workspace, numbered one after the other and read back
    together from another process (a retention purge deletes hundreds of conversations a
    second, each with its "deleted" event): one event for the streams, numbered as the last of
    them, whose agents' notice drops every conversation and whose visitors' notice reaches the
    streams of each. Measured (tests/bench/bench_privacy.py): one delivery, notice and send per
    deletion to every open inbox was most of what a purge added to chat delivery times."""

    __slots__ = ("seq", "workspace_id", "conversation_id", "kind", "ref_id", "actor",
                 "conversation_ids")

    def __init__(self, first):
        self.seq, self.workspace_id, self.kind, self.actor = (
            first.seq, first.workspace_id, first.kind, first.actor)
        self.conversation_id, self.ref_id = 0, 0
        self.conversation_ids = [first.conversation_id]

    def add(self, row) -> None:
        self.seq = row.seq
        self.conversation_ids.append(row.conversation_id)


def _follows(last, row) -> bool:
    """Whether deletion `row` comes right after `last` (a deletion, or a run of them) of the
    same workspace and the same actor: the two can be told as one."""
    return (row.kind == last.kind == DELETED and row.workspace_id == last.workspace_id
            and row.actor == last.actor and row.seq == last.seq + 1)


def grouped(rows: list, known: list) -> list:
    """[(row, Event published from memory or None)], runs of two or more deletions read back
    (known None) made one Deletions each."""
    out = []
    for row, event in zip(rows, known, strict=True):
        if event is None and out and out[-1][1] is None and _follows(out[-1][0], row):
            run = out[-1][0]
            if not isinstance(run, Deletions):
                run = Deletions(run)
                out[-1] = (run, None)
            run.add(row)
            continue
        out.append((row, event))
    return out


class Subscriber:
    __slots__ = ("workspace_id", "conversation_id", "audience", "queue", "dropped", "allowed",
                 "heartbeat", "beat_every", "beat_at", "check_every", "check_at", "known")

    def __init__(self, workspace_id=None, conversation_id=None, allowed=None, heartbeat=None,
                 beat_every=15.0, check_every=15.0, language=None):
        self.workspace_id = workspace_id
        self.conversation_id = conversation_id
        self.audience = visitor_audience(language) if conversation_id is not None else AGENT
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
        # Whether the hub already followed its workspace when it subscribed (else the stream
        # tells the hub where to start: see Hub.begin).
        self.known = False

    def put(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped = True  # the stream ends at its next item; its browser replays


def _counters_sql(count: int, mark: str) -> str:
    return ('SELECT "workspace_id", "seq" FROM "event_counter" WHERE "workspace_id" IN ('
            + ", ".join([mark] * count) + ")")


class FileWatch:
    """Another process's commits to the SQLite file: `PRAGMA data_version` on a read-only
    connection of its own changes when any other connection commits (~10 µs to ask)."""

    mark = "?"

    def __init__(self, path: str):
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                    isolation_level=None)
        # counters() runs in a worker thread: a hub stopping meanwhile must not close the
        # connection under it.
        self.lock = threading.Lock()

    def every(self, idle: bool, pushed: bool) -> float:
        return IDLE_INTERVAL if idle else WATCH_INTERVAL

    def version(self):
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def counters(self, workspace_ids) -> dict:
        """{workspace: its last event number} of `workspace_ids` (in a worker thread)."""
        found = {}
        ids = list(workspace_ids)
        with self.lock:
            for start in range(0, len(ids), COUNTERS_PER_QUERY):
                chunk = ids[start:start + COUNTERS_PER_QUERY]
                found.update(self.conn.execute(_counters_sql(len(chunk), self.mark),
                                               chunk).fetchall())
        return found

    def close(self):
        with self.lock:
            self.conn.close()


class PollWatch(FileWatch):
    """PostgreSQL has no data_version: the counters are asked every POLL_SECONDS on a
    connection of its own, every SAFETY_POLL_SECONDS while Redis wake-ups arrive."""

    mark = "%s"

    def __init__(self, url: str):
        import psycopg

        # Named, so that an operator (or a test) can tell it apart in pg_stat_activity.
        self.conn = psycopg.connect(url, autocommit=True, application_name=WATCH_NAME)
        self.lock = threading.Lock()

    def every(self, idle: bool, pushed: bool) -> float:
        return SAFETY_POLL_SECONDS if pushed else POLL_SECONDS

    def version(self):
        return None  # unknown: every round asks the counters


def watcher(database: str):
    return PollWatch(database) if database.startswith("postgresql://") else FileWatch(database)


class Hub:
    def __init__(self, database_path: str, fetch_after, presence=None, render=None,
                 redis_url=None):
        self.database_path = database_path
        # (workspace_id, after) -> that workspace's event rows after `after`, in order, at
        # most READ_LIMIT; called in a worker thread.
        self.fetch_after = fetch_after
        # [(row, audiences)] -> [{audience: SSE bytes or None}] (render.Renderer.events), called
        # by render() wherever events are rendered; None: events carry no bytes (hub-only tests).
        self.render_events = render
        self.renders = Counter()  # (audience, workspace, seq) -> times rendered: once, if all is well
        # (process_id, keys to write, keys to delete) -> None, in a thread; see arrive().
        self.presence = presence
        self.process_id = secrets.token_hex(8)
        self.present = {}  # (kind, workspace_id, subject_id) -> open streams in this process
        self.arrived = set()  # keys whose row is still to be written ...
        self.left = set()  # ... or deleted, by the next presence round
        self.presence_due = None
        self.tasks = []
        self.by_workspace = defaultdict(set)  # agents' streams
        self.by_conversation = defaultdict(set)  # visitors' streams
        # conversation -> the audiences (languages) of its visitors' streams here: a tuple
        # replaced whole when a stream comes or goes, so that other threads read it safely.
        self.visitor_audiences = {}
        self.watching = Counter()  # workspace -> this process's streams of it (both audiences)
        self.cursor = {}  # workspace -> the last event number delivered to its streams
        # Events published from memory that wait for an earlier number (another process's
        # event, or another thread's publish still on its way): workspace -> {seq: Event}.
        self.pending = defaultdict(dict)
        self.announced = {}  # workspace -> the newest number a publish from memory brings
        self.dirty = set()  # workspaces the dispatcher reads at its next round
        self.check = False  # ... and whether it first asks every watched workspace's counter
        self.loop = None
        self.wake = None
        self.task = None
        self.rendered = OrderedDict()  # (audience, workspace, seq) -> SSE bytes or None
        self.agenda = []  # heap of the streams' next heartbeats and checks; see _due()
        self.stale = 0  # agenda entries of streams that have gone
        self.order = itertools.count()
        self.read_back = 0  # events the dispatcher read from the database and rendered itself
        on_postgres = database_path.startswith("postgresql://")
        self.listener = (wakeups.Listener(redis_url, self._woken, self._pushed)
                         if redis_url and on_postgres else None)
        self.pushed = False  # Redis wake-ups are arriving
        # SQLite: other processes ring this hub's doorbell after committing chat events.
        self.doorbell = None if on_postgres else wakeups.Doorbell(database_path)
        # The watcher is opened in a worker thread that a stopping hub may abandon (cancelled
        # mid-open): the thread hands it over here under the lock, or closes it itself once the
        # hub has stopped, so no connection is ever left to the garbage collector.
        self.watch_lock = threading.Lock()
        self.watch_open = None
        self.stopped = False

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
                self.renders[(audience, row.workspace_id, row.seq)] += 1
        # Only recent events are counted: a long-lived process must not keep a key per event
        # (a leak, and objects for every full garbage collection to walk).
        while len(self.renders) > 2 * RENDER_CACHE:
            self.renders.pop(next(iter(self.renders)), None)
        return self.render_events(wanted)

    def remember(self, events) -> None:
        """Keep recent renderings (on the loop), for streams that replay those events."""
        for event in events:
            if event.conversation_ids is not None:
                continue  # a replay reads each of its deletions again, by its own number
            for audience, data in event.sse.items():
                self.rendered[(audience, event.workspace_id, event.seq)] = data
        while len(self.rendered) > RENDER_CACHE:
            self.rendered.popitem(last=False)

    def replay_rendered(self, rows, audience: str) -> list:
        """Bytes for each replayed row: the dispatcher's rendering when still kept, else
        rendered now. In a worker thread (a dict read is safe there: the loop only adds)."""
        found = [self.rendered.get((audience, row.workspace_id, row.seq), self) for row in rows]
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
        ids = getattr(row, "conversation_ids", None)
        if ids is not None:
            heard = {a for cid in ids for a in self.visitor_audiences.get(cid, ())}
            return (AGENT,) * agent + tuple(sorted(heard))
        return (AGENT,) * agent + self.visitor_audiences.get(row.conversation_id, ())

    def _fetch_rendered(self, wanted: dict):
        """In a worker thread: each workspace's events after its number in `wanted`, rendered
        (those published from memory are already); and the workspaces with more to read."""
        rows, more = [], set()
        for workspace_id, after in wanted.items():
            found = self.fetch_after(workspace_id, after)
            rows += found
            if len(found) >= READ_LIMIT:
                more.add(workspace_id)
        # An event published from memory is already rendered: only the rest is (a dict read
        # from this thread is safe; the loop only adds and removes whole entries).
        items = grouped(rows, [self._published(row) for row in rows])
        fresh = [row for row, event in items if event is None]
        self.read_back += sum(len(row.conversation_ids) if isinstance(row, Deletions) else 1
                              for row in fresh)
        made = iter(self.render([(row, self._audiences(row)) for row in fresh]))
        return [event or Event(row, next(made)) for row, event in items], more

    def _published(self, row):
        """The Event published from memory for this row, if one is waiting."""
        event = self.pending.get(row.workspace_id, {}).get(row.seq)
        if event is not None and (event.kind, event.ref_id, event.conversation_id) == (
                row.kind, row.ref_id, row.conversation_id):
            return event
        return None

    # -- publishing from memory ------------------------------------------------------------------
    def publish(self, written: list) -> None:
        """From the thread that committed `written` (live.Written, numbered): render each event
        once per audience watching, then hand them to the loop. No read back, no hop."""
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
        written = [row for row in written if row.workspace_id in self.watching]
        if not written:
            return []
        # Announced before rendering, so that the watcher, seeing the commit meanwhile, leaves
        # these to this publish instead of reading them back.
        for row in written:
            if row.seq > self.announced.get(row.workspace_id, 0):
                self.announced[row.workspace_id] = row.seq
        wanted = [(row, self._audiences(row)) for row in written]
        try:
            return [Event(row, sse) for row, sse in zip(written, self.render(wanted), strict=True)]
        except Exception:
            log.exception("chat event not rendered from memory; the dispatcher reads it")
            self.wake_threadsafe(check=True)
            return []

    def accept(self, events: list) -> None:
        """On the loop: events published from memory, delivered in each workspace's order."""
        touched = set()
        for event in events:
            workspace_id = event.workspace_id
            if workspace_id not in self.watching:
                continue
            if event.seq > self.cursor.get(workspace_id, -1):
                self.pending[workspace_id][event.seq] = event
                touched.add(workspace_id)
        gaps = [workspace_id for workspace_id in touched if self._drain(workspace_id)]
        if gaps:
            self.dirty.update(gaps)
            self.wake.set()  # a gap: the dispatcher reads what fills it

    def _drain(self, workspace_id) -> bool:
        """Deliver a workspace's pending events while they follow on from the last one
        delivered; True when some are left behind a gap (an event of another process, or
        another thread's publish not arrived yet), which the dispatcher reads and fills:
        nothing skipped. A workspace whose start is not known yet waits (see begin)."""
        pending = self.pending.get(workspace_id)
        if not pending:
            self.pending.pop(workspace_id, None)
            return False
        cursor = self.cursor.get(workspace_id)
        if cursor is None:
            return False
        while (event := pending.get(cursor + 1)) is not None:
            if any(a not in event.sse for a in self._audiences(event)):
                break  # a stream subscribed since it was rendered: the dispatcher renders it
            del pending[event.seq]
            self._deliver([event])
            cursor = event.seq
        for seq in [seq for seq in pending if seq <= cursor]:
            del pending[seq]
        if not pending:
            del self.pending[workspace_id]
            return False
        return True

    def _deliver(self, events: list) -> None:
        self.remember(events)
        for event in events:
            self.cursor[event.workspace_id] = event.seq
            for sub in self.by_workspace.get(event.workspace_id, ()):
                sub.put(event)
            for conversation_id in event.conversation_ids or (event.conversation_id,):
                for sub in self.by_conversation.get(conversation_id, ()):
                    sub.put(event)

    # -- subscribers ---------------------------------------------------------------------------
    def subscribe(self, workspace_id, conversation_id=None, **timers) -> Subscriber:
        """A stream of a workspace (an agent's) or of one of its conversations (a visitor's).
        `timers`: allowed, heartbeat, beat_every, check_every, language (see Subscriber). Unless its
        `known` is true, the stream must tell begin() where its replay starts."""
        sub = Subscriber(workspace_id, conversation_id, **timers)
        sub.known = workspace_id in self.cursor
        self.watching[workspace_id] += 1
        if conversation_id is not None:
            self.by_conversation[conversation_id].add(sub)
            self._heard_in(conversation_id)
        else:
            self.by_workspace[workspace_id].add(sub)
        self._due(sub.beat_at, BEAT, sub)
        if sub.allowed is not None:
            self._due(sub.check_at, CHECK, sub)
        return sub

    def begin(self, workspace_id: int, seq: int) -> int:
        """A stream that subscribed while this hub did not follow `workspace_id` read the
        workspace's counter (`seq`) before its replay: the hub follows on from there, unless
        another stream started it already. Returns where the hub follows from; when that is
        past `seq`, the stream replays again up to it (what lies between was committed before
        the other stream's start, so its replay finds it)."""
        if workspace_id not in self.watching:
            return seq
        if workspace_id not in self.cursor:
            self.cursor[workspace_id] = seq
            self._drain(workspace_id)
            # Committed by another process while nobody followed the workspace here: the
            # counters tell (asked, not read: what this process publishes is on its way).
            if self.wake is not None:
                self._wake(True)
        return self.cursor[workspace_id]

    def _heard_in(self, conversation_id) -> None:
        audiences = tuple(sorted({s.audience for s in self.by_conversation.get(conversation_id, ())}))
        if audiences:
            self.visitor_audiences[conversation_id] = audiences
        else:
            self.visitor_audiences.pop(conversation_id, None)

    def _due(self, at: float, what: int, sub: Subscriber) -> None:
        # The ticker's agenda: (due time, order, what, subscriber). A stream that has gone is
        # dropped when its entry comes up (see tick), not searched for when it leaves.
        heapq.heappush(self.agenda, (at, next(self.order), what, sub))

    def _group(self, sub: Subscriber):
        return (self.by_conversation.get(sub.conversation_id) if sub.conversation_id is not None
                else self.by_workspace.get(sub.workspace_id))

    def subscribed(self, sub: Subscriber) -> bool:
        group = self._group(sub)
        return group is not None and sub in group

    def unsubscribe(self, sub: Subscriber) -> None:
        group = self._group(sub)
        if group is not None and sub in group:
            group.discard(sub)
            if not group:
                key = sub.conversation_id if sub.conversation_id is not None else sub.workspace_id
                (self.by_conversation if sub.conversation_id is not None else self.by_workspace).pop(key, None)
            if sub.conversation_id is not None:
                self._heard_in(sub.conversation_id)
            self.watching[sub.workspace_id] -= 1
            if self.watching[sub.workspace_id] <= 0:
                # Nobody here follows it any more: forget it (a later stream starts it again).
                del self.watching[sub.workspace_id]
                for state in (self.cursor, self.pending, self.announced):
                    state.pop(sub.workspace_id, None)
                self.dirty.discard(sub.workspace_id)
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
    def wake_threadsafe(self, check: bool = False) -> None:
        """From any thread: wake the dispatcher; `check`: it first asks which watched
        workspaces have moved on (a commit of this process it was not handed)."""
        if self.loop is not None and self.wake is not None:
            try:
                self.loop.call_soon_threadsafe(self._wake, check)
            except RuntimeError:
                pass  # the loop is closing

    def _wake(self, check: bool) -> None:
        self.check = self.check or check
        self.wake.set()

    def _woken(self, pairs) -> None:
        """On the loop: a Redis wake-up (workspace, seq) from some process's commit. Only the
        workspaces followed here, and only numbers not delivered or on their way, are read."""
        for workspace_id, seq in pairs:
            if workspace_id in self.cursor and seq > max(
                    self.cursor[workspace_id], self.announced.get(workspace_id, 0)):
                self.dirty.add(workspace_id)
        if self.dirty:
            self.wake.set()

    def _rung(self) -> None:
        """On the loop: the doorbell rang (another process committed chat events)."""
        pairs = self.doorbell.rings()
        if pairs:
            self._woken(pairs)
        else:
            self._wake(True)  # a ring without pairs: ask every watched workspace

    def _pushed(self, connected: bool) -> None:
        """The Redis subscription was made (True) or lost: either way, what may have been
        missed meanwhile is asked for."""
        self.pushed = connected
        self._wake(True)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.presence_due = asyncio.Event()
        self.stopped = False
        self.task = asyncio.create_task(self.run(), name="chat-dispatcher")
        self.tasks = [asyncio.create_task(self.keep_presence(), name="chat-presence"),
                      asyncio.create_task(self.tick(), name="chat-ticker")]
        if self.listener is not None:
            self.listener.start(self.loop)
        if self.doorbell is not None and (bell := self.doorbell.open()) is not None:
            self.loop.add_reader(bell, self._rung)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.listener is not None:
            self.listener.stop()
        if self.doorbell is not None and self.doorbell.socket is not None:
            self.loop.remove_reader(self.doorbell.socket)
            self.doorbell.close()
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

    def announce(self, events: list) -> None:
        """On the loop, after the chat writer's commit: tell the other processes (Redis)."""
        if self.listener is not None and events:
            self.listener.publish([(e.workspace_id, e.seq) for e in events])

    async def run(self) -> None:
        watch = None
        last_change = time.monotonic()
        try:
            while True:
                try:
                    if watch is None:
                        # (Again after a failure: the database restarted, a connection broke.)
                        watch = await anyio.to_thread.run_sync(self._open_watch)
                        version = watch.version()
                        self.check = True  # whatever was missed meanwhile is asked for ...
                        self.wake.set()  # ... at once
                    idle = time.monotonic() - last_change > IDLE_AFTER
                    try:
                        await asyncio.wait_for(self.wake.wait(), watch.every(idle, self.pushed))
                    except TimeoutError:
                        pass
                    self.wake.clear()
                    current = watch.version()
                    if current != version or current is None:
                        self.check = True  # another process committed (or, unknown: ask)
                    version = current
                    if self.check:
                        self.check = False
                        if self.cursor:
                            await self._ask_counters(watch)
                    if not self.dirty:
                        continue
                    last_change = time.monotonic()
                    await self.dispatch()
                except Exception:
                    # Streams wait meanwhile; nothing is lost: the cursors stay where they were.
                    log.exception("chat dispatcher: reading events failed; trying again")
                    if watch is not None:
                        self._close_watch()
                        watch = None
                    await asyncio.sleep(1)
        finally:
            with self.watch_lock:
                self.stopped = True
            self._close_watch()

    def _open_watch(self):
        watch = watcher(self.database_path)
        with self.watch_lock:
            if not self.stopped:
                self.watch_open = watch
                return watch
        watch.close()  # the hub stopped while this thread was connecting
        return None

    def _close_watch(self) -> None:
        with self.watch_lock:
            watch, self.watch_open = self.watch_open, None
        if watch is not None:
            watch.close()

    async def _ask_counters(self, watch) -> None:
        """Mark the watched workspaces whose counter is past what was delivered and what this
        process's own publishes bring (most commits seen are this process's own chat writes,
        already published from memory: nothing is read back for them)."""
        counters = await anyio.to_thread.run_sync(watch.counters, list(self.cursor))
        for workspace_id, seq in counters.items():
            cursor = self.cursor.get(workspace_id)
            if cursor is not None and seq > max(cursor, self.announced.get(workspace_id, 0)):
                self.dirty.add(workspace_id)
            elif cursor is not None and self.pending.get(workspace_id):
                self.dirty.add(workspace_id)  # waiting on an event not read yet

    async def dispatch(self) -> None:
        """Read what is new in the dirty workspaces and render what was not published from
        memory, once per audience watching, in one thread hop; then hand every subscriber the
        same Event (the streams write its bytes as they are)."""
        while self.dirty:
            wanted = {w: self.cursor[w] for w in self.dirty if w in self.cursor}
            self.dirty.clear()
            if not wanted:
                return
            events, more = await anyio.to_thread.run_sync(self._fetch_rendered, wanted)
            late = [(event, audiences) for event in events
                    if (audiences := tuple(a for a in self._audiences(event) if a not in event.sse))]
            if late and self.render_events is not None:
                # Streams that subscribed while the hop ran: render what they are owed.
                made = await anyio.to_thread.run_sync(self.render, late)
                for (event, _), sse in zip(late, made, strict=True):
                    event.sse.update(sse)
            # Events of one workspace come in order; its cursor may have moved on meanwhile
            # (publishes from memory), and a workspace nobody follows any more is skipped.
            self._deliver([event for event in events
                           if event.seq > self.cursor.get(event.workspace_id, float("inf"))])
            for workspace_id in wanted:
                if self._drain(workspace_id):
                    # Still behind a gap after reading (its event committed after this read
                    # began): asked again shortly.
                    self.loop.call_later(WATCH_INTERVAL, self._wake, True)
            self.dirty.update(w for w in more if w in self.cursor)


def install(hub: Hub) -> None:
    global _hub
    with _hub_lock:
        _hub = hub


def uninstall() -> None:
    global _hub
    with _hub_lock:
        _hub = None
