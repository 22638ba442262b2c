"""The per-process dispatcher: one reader of new chat events that fans them out to streams.

A write commits first, then calls `notify()`, which wakes the dispatcher at once. Commits made
by other processes (the Huey worker, a second web process) are noticed by watching
`PRAGMA data_version` on a dedicated read-only connection: it changes whenever another
connection commits and costs microseconds to read, so the dispatcher checks it every few
milliseconds instead of every client polling the database. (PostgreSQL counterpart:
LISTEN/NOTIFY.)
"""

import asyncio
import contextlib
import logging
import random
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict, defaultdict

import anyio

WATCH_INTERVAL = 0.01  # seconds between data_version checks while chats are active
IDLE_INTERVAL = 0.1  # ... and once nothing has changed for IDLE_AFTER seconds
IDLE_AFTER = 5.0
PRESENCE_EVERY = 15.0  # seconds between refreshes of this process's presence rows
PRESENCE_GATHER = 0.1  # arrivals and leaves within this long are written together
QUEUE_LIMIT = 2000  # a stream this far behind is dropped; its browser reconnects and replays
RENDER_CACHE = 512  # recent (audience, event id) renderings shared by every stream
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


class Beat:
    """Put in a subscriber's queue by the hub's ticker: time for a heartbeat. `data` is the
    status line, rendered once per round for every stream that shows one."""
    __slots__ = ("data",)

    def __init__(self, data=None):
        self.data = data


END = object()  # put in a subscriber's queue when its permission check said no


class Subscriber:
    __slots__ = ("workspace_id", "conversation_id", "queue", "dropped", "allowed", "heartbeat",
                 "beat_every", "beat_at", "check_every", "check_at")

    def __init__(self, workspace_id=None, conversation_id=None, allowed=None, heartbeat=None,
                 beat_every=15.0, check_every=15.0):
        self.workspace_id = workspace_id
        self.conversation_id = conversation_id
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


class Hub:
    def __init__(self, database_path: str, fetch_after, max_id, presence=None):
        self.database_path = database_path
        self.fetch_after = fetch_after  # (last_id) -> list of event rows, in a thread
        self.max_id = max_id
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
        self.rendered = OrderedDict()

    async def render(self, key, make):
        """Render an event once per audience: the first stream to ask renders it, the others
        await the same result (fifty agents watching one workspace cost one rendering)."""
        future = self.rendered.get(key)
        if future is None:
            future = asyncio.ensure_future(make())
            self.rendered[key] = future
            if len(self.rendered) > RENDER_CACHE:
                self.rendered.popitem(last=False)
        return await asyncio.shield(future)

    # -- subscribers ---------------------------------------------------------------------------
    def subscribe(self, workspace_id=None, conversation_id=None, **timers) -> Subscriber:
        """`timers`: allowed, heartbeat, beat_every, check_every (see Subscriber)."""
        sub = Subscriber(workspace_id, conversation_id, **timers)
        if conversation_id is not None:
            self.by_conversation[conversation_id].add(sub)
        else:
            self.by_workspace[workspace_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        group = (self.by_conversation.get(sub.conversation_id) if sub.conversation_id is not None
                 else self.by_workspace.get(sub.workspace_id))
        if group is not None:
            group.discard(sub)
            if not group:
                key = sub.conversation_id if sub.conversation_id is not None else sub.workspace_id
                (self.by_conversation if sub.conversation_id is not None else self.by_workspace).pop(key, None)

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
        """Write what arrived and delete what left (every present key when `refresh`)."""
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.presence_due.wait(),
                                       max(0.0, next_refresh - time.monotonic()))
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
        hop; a stream whose check says no is sent END. No stream keeps a timer of its own."""
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            beats, checks = defaultdict(list), []
            for sub in self.subscribers():
                if sub.beat_at <= now:
                    sub.beat_at = now + sub.beat_every
                    beats[sub.heartbeat].append(sub)
                if sub.allowed is not None and sub.check_at <= now:
                    sub.check_at = now + sub.check_every * random.uniform(0.75, 1.25)
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
                sub.check_at = time.monotonic() + 5 * TICK
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
        watch = sqlite3.connect(f"file:{self.database_path}?mode=ro", uri=True,
                                check_same_thread=False, isolation_level=None)
        try:
            version = watch.execute("PRAGMA data_version").fetchone()[0]
            last_change = time.monotonic()
            while True:
                idle = time.monotonic() - last_change > IDLE_AFTER
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_INTERVAL if idle else WATCH_INTERVAL)
                    woken = True
                except TimeoutError:
                    woken = False
                self.wake.clear()
                current = watch.execute("PRAGMA data_version").fetchone()[0]
                if not woken and current == version:
                    continue
                version = current
                last_change = time.monotonic()
                await self.dispatch()
        finally:
            watch.close()

    async def dispatch(self) -> None:
        while True:
            rows = await anyio.to_thread.run_sync(self.fetch_after, self.last_id)
            for row in rows:
                self.last_id = row.id
                for sub in self.by_workspace.get(row.workspace_id, ()):
                    sub.put(row)
                for sub in self.by_conversation.get(row.conversation_id, ()):
                    sub.put(row)
            if len(rows) < 500:
                return


def install(hub: Hub) -> None:
    global _hub
    with _hub_lock:
        _hub = hub


def uninstall() -> None:
    global _hub
    with _hub_lock:
        _hub = None
