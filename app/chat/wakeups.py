"""Wake-ups between processes over Redis pub/sub (PostgreSQL + Redis set-ups).

After a chat write commits, its process publishes "workspace:seq" pairs on one channel; every
web process listens and reads the events table only for the workspaces it has streams for
(app/chat/live.py). The table stays the truth: a wake-up carries no event, so one that is lost
(Redis restarting, a process subscribing a moment late) costs only time, never an event:
streams then catch up from the hub's poll of the workspaces' counters (every second while
Redis is away, every few seconds as a safety net while it is there). On SQLite every process
shares one file, and `PRAGMA data_version` already tells a process about the others' commits.
"""

import logging
import queue
import secrets
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


def configure(url: str | None) -> None:
    """Called by the app factory: wake-ups go over `url` (None: not at all)."""
    global _url, _client
    with _lock:
        _url, _client = url or None, None


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
    raises: without Redis the other processes find the events at their next poll."""
    if _url is not None and pairs:
        _publish(encode(pairs))


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
