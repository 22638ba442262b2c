"""The per-process dispatcher: one reader of new chat events that fans them out to streams.

A write commits first, then calls `notify()`, which wakes the dispatcher at once. Commits made
by other processes (the Huey worker, a second web process) are noticed by watching
`PRAGMA data_version` on a dedicated read-only connection: it changes whenever another
connection commits and costs microseconds to read, so the dispatcher checks it every few
milliseconds instead of every client polling the database. (PostgreSQL counterpart:
LISTEN/NOTIFY.)
"""

import asyncio
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
QUEUE_LIMIT = 2000  # a stream this far behind is dropped; its browser reconnects and replays
RENDER_CACHE = 512  # recent (audience, event id) renderings shared by every stream

_hub = None
_hub_lock = threading.Lock()


def notify() -> None:
    """Called after a commit, from any thread: wake this process's dispatcher if it runs."""
    hub = _hub
    if hub is not None:
        hub.wake_threadsafe()


class Subscriber:
    __slots__ = ("workspace_id", "conversation_id", "queue", "dropped")

    def __init__(self, workspace_id=None, conversation_id=None):
        self.workspace_id = workspace_id
        self.conversation_id = conversation_id
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.dropped = False


class Hub:
    def __init__(self, database_path: str, fetch_after, max_id, presence=None):
        self.database_path = database_path
        self.fetch_after = fetch_after  # (last_id) -> list of event rows, in a thread
        self.max_id = max_id
        # (process_id, keys to write, keys to delete) -> None, in a thread; see arrive().
        self.presence = presence
        self.process_id = secrets.token_hex(8)
        self.present = {}  # (kind, workspace_id, subject_id) -> open streams in this process
        self.presence_task = None
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
    def subscribe(self, workspace_id=None, conversation_id=None) -> Subscriber:
        sub = Subscriber(workspace_id, conversation_id)
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

    @property
    def subscriber_count(self) -> int:
        return sum(map(len, self.by_workspace.values())) + sum(map(len, self.by_conversation.values()))

    # -- presence: who is here, shared with other processes through the database -------------
    # One row per (process, kind, workspace, subject), written when the first stream for it
    # opens and deleted when the last one closes, all of them refreshed together in one
    # transaction every PRESENCE_EVERY seconds: a few writes, however many streams are open.
    async def arrive(self, key) -> None:
        count = self.present.get(key, 0)
        self.present[key] = count + 1
        if count == 0 and self.presence is not None:
            await anyio.to_thread.run_sync(self.presence, self.process_id, [key], [])

    async def leave(self, key) -> None:
        count = self.present.get(key, 0) - 1
        if count > 0:
            self.present[key] = count
            return
        self.present.pop(key, None)
        if self.presence is not None:
            await anyio.to_thread.run_sync(self.presence, self.process_id, [], [key])

    async def refresh_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_EVERY)
            if self.present and self.presence is not None:
                await anyio.to_thread.run_sync(self.presence, self.process_id, list(self.present), [])

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
        self.last_id = await anyio.to_thread.run_sync(self.max_id)
        self.task = asyncio.create_task(self.run(), name="chat-dispatcher")
        self.presence_task = asyncio.create_task(self.refresh_presence(), name="chat-presence")

    async def stop(self) -> None:
        if self.presence_task is not None:
            self.presence_task.cancel()
            if self.present and self.presence is not None:
                await anyio.to_thread.run_sync(self.presence, self.process_id, [], list(self.present))
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
                targets = list(self.by_workspace.get(row.workspace_id, ()))
                targets += self.by_conversation.get(row.conversation_id, ())
                for sub in targets:
                    try:
                        sub.queue.put_nowait(row)
                    except asyncio.QueueFull:
                        sub.dropped = True
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
