"""Wake-ups between processes: a chat event committed by one process reaches the streams of
another at once, instead of at that process's next poll.

- PostgreSQL + Redis: after a chat write commits, its process publishes "workspace:seq" pairs
  on one channel; every web process listens and reads the events table only for the
  workspaces it has streams for (app/chat/live.py).
- SQLite: every process shares one file, and `PRAGMA data_version` tells the web process of
  the others' commits at its next poll (every 50 ms while chats are active). Until then an
  event the worker recorded (a retention purge's deletions, an e-mailed reply) is not on the
  streams, and a chat message numbered after it in that workspace waits for it to be read.
  So the web process also listens on a doorbell (a Unix datagram socket with an abstract name
  drawn from the database's path: no file to leave behind or to trip over, gone with the
  process) and the worker rings it with the same pairs after its commit.

Either way the table stays the truth: a wake-up carries no event, so one that is lost (Redis
restarting, a process subscribing a moment late, a doorbell nobody listens to) costs only time,
never an event: streams then catch up from the hub's poll.
"""

import atexit
import hashlib
import logging
import os
import queue
import secrets
import socket
import sys
import threading
import time

log = logging.getLogger(__name__)

CHANNEL = "lumnar:chat-events"
# Each message starts with its process's tag: a process's own wake-ups come back to it from
# Redis, and its hub already has those events (published from memory).
PROCESS_TAG = secrets.token_hex(6)
_url = None
_client = None
_lock = threading.Lock()
_quiet_until = 0.0  # a Redis that is away is logged about once a minute, not per write


def configure(url: str | None, database_path: str | None = None) -> None:
    """Called by the app factory: wake-ups go over Redis at `url`, else by the doorbell of the
    SQLite database at `database_path` (None: not at all)."""
    global _url, _client, _bell
    with _lock:
        _url, _client = url or None, None
        _bell = doorbell_address(database_path) if database_path and not _url else None


def encode(pairs, tag: str = PROCESS_TAG) -> bytes:
    return " ".join([tag, *(f"{workspace}:{seq}" for workspace, seq in pairs)]).encode()


def decode(payload) -> list[tuple[int, int]]:
    """The pairs in another process's message ([] for this process's own), skipping anything
    malformed (the channel is ours, but a wake-up must never break the listener)."""
    if isinstance(payload, bytes):
        payload = payload.decode("ascii", "replace")
    tag, _, rest = str(payload).partition(" ")
    if tag == PROCESS_TAG:
        return []
    pairs = []
    for item in rest.split():
        workspace, _, seq = item.partition(":")
        if workspace.isdigit() and seq.isdigit():
            pairs.append((int(workspace), int(seq)))
    return pairs


def announce(pairs) -> None:
    """Publish `pairs` (workspace, seq) from a thread that has just committed them. Never
    raises: without a wake-up the other processes find the events at their next poll."""
    if not pairs:
        return
    if _url is not None:
        _publish(encode(pairs))
    elif _bell is not None and _bell not in _listening:
        _ring(_bell, encode(newest(pairs)))


def newest(pairs) -> list[tuple[int, int]]:
    """Each workspace's highest number only: a hub reads everything up to it (a purge tells
    hundreds of deletions of one workspace at once)."""
    top = {}
    for workspace, seq in pairs:
        top[workspace] = max(seq, top.get(workspace, seq))
    return list(top.items())


def _publish(payload: bytes) -> None:
    global _client, _quiet_until
    try:
        client = _client
        if client is None:
            import redis

            with _lock:
                client = _client = _client or redis.Redis.from_url(
                    _url, socket_timeout=0.5, socket_connect_timeout=0.5)
        client.publish(CHANNEL, payload)
    except Exception as exc:
        if time.monotonic() > _quiet_until:
            _quiet_until = time.monotonic() + 60
            log.warning("chat wake-up not published (other processes poll instead): %s", exc)


class Listener:
    """The hub's side, in two daemon threads of its own with redis-py's blocking client (its
    asyncio pub/sub can hang when cancelled mid-read, and a server that stops must never wait
    on Redis): one subscribes to the channel and hands each message to the loop
    (`on_wake(pairs)`), and `on_state(connected)` when the subscription is made or lost,
    reconnecting after a second (then up to RETRY_MAX); the other publishes what the loop
    queues (publish()), so the loop never waits on the network."""

    RETRY_MAX = 5.0
    READ_SECONDS = 1.0  # a stopping listener notices within this long

    def __init__(self, redis_url: str, on_wake, on_state):
        self.url, self.on_wake, self.on_state = redis_url, on_wake, on_state
        self.loop = None
        self.stopping = threading.Event()
        self.outbox = queue.SimpleQueue()

    def start(self, loop) -> None:
        self.loop = loop
        threading.Thread(target=self._listen, name="chat-wakeups-in", daemon=True).start()
        threading.Thread(target=self._send, name="chat-wakeups-out", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.outbox.put(None)

    def publish(self, pairs) -> None:
        """From the loop (the chat writer after its commit): published by the sending thread."""
        if pairs and _url is not None:
            self.outbox.put(encode(pairs))

    def _send(self) -> None:
        while (payload := self.outbox.get()) is not None:
            _publish(payload)

    def _tell(self, fn, arg) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # the loop has closed
            self.stopping.set()

    def _listen(self) -> None:
        import redis

        delay = 1.0
        while not self.stopping.is_set():
            client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
            connected = False
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                connected = True
                self._tell(self.on_state, True)
                delay = 1.0
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=self.READ_SECONDS)
                    if message and message.get("type") == "message":
                        pairs = decode(message.get("data", b""))
                        if pairs:
                            self._tell(self.on_wake, pairs)
            except Exception as exc:  # Redis away or restarting: poll meanwhile, then again
                if not self.stopping.is_set():
                    log.warning("chat wake-ups from Redis lost (polling meanwhile): %s", exc)
            finally:
                if connected:
                    self._tell(self.on_state, False)
                try:
                    client.close()
                except Exception:
                    pass
            self.stopping.wait(delay)
            delay = min(self.RETRY_MAX, delay * 2)


# --- the SQLite doorbell ----------------------------------------------------------------------
_bell = None  # this process's database's doorbell address, None: no doorbell (PostgreSQL)
_listening = set()  # addresses this process's hub listens on: its own commits need no ring
_ringer = None


def doorbell_address(database_path: str) -> bytes | None:
    """The doorbell's address for this database file: Linux's abstract socket namespace (a
    leading NUL byte), so nothing is created on disk; None elsewhere, or for a database in
    memory (no other process shares it)."""
    if not sys.platform.startswith("linux") or database_path in ("", ":memory:"):
        return None
    digest = hashlib.sha256(os.path.realpath(database_path).encode()).hexdigest()[:32]
    return b"\0lumnar-doorbell-" + digest.encode()


def _ring(address: bytes, payload: bytes) -> None:
    global _ringer
    try:
        ringer = _ringer
        if ringer is None:
            ringer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            ringer.setblocking(False)
            _ringer = ringer
            atexit.register(ringer.close)
        ringer.sendto(payload, address)
    except OSError:
        # Nobody listens (no web process: ECONNREFUSED), or the hub has not read the last
        # rings yet (EAGAIN: it will read everything then). Either way nothing is lost.
        pass


class Doorbell:
    """The web process's side: a datagram socket bound to the database's address, which the
    hub's loop watches (add_reader). Only one process can bind it; another web process on the
    same file keeps to its poll."""

    READ = 65536

    def __init__(self, database_path: str):
        self.address = doorbell_address(database_path)
        self.socket = None

    def open(self):
        """The bound socket (for the loop to watch), or None: no doorbell here."""
        if self.address is None:
            return None
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            listener.bind(self.address)
        except OSError:  # another process listens already
            listener.close()
            return None
        listener.setblocking(False)
        self.socket = listener
        _listening.add(self.address)
        return listener

    def rings(self) -> list[tuple[int, int]]:
        """Every (workspace, seq) rung since the last call."""
        pairs = []
        while self.socket is not None:
            try:
                pairs += decode(self.socket.recv(self.READ))
            except OSError:  # nothing more to read (BlockingIOError), or the socket is gone
                break
        return pairs

    def close(self) -> None:
        if self.socket is not None:
            _listening.discard(self.address)
            self.socket.close()
            self.socket = None
