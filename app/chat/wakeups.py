"""Wake-ups between processes over Redis pub/sub (PostgreSQL + Redis set-ups).

After a chat write commits, its process publishes "workspace:seq" pairs on one channel; every
web process listens and reads the events table only for the workspaces it has streams for
(app/chat/live.py). The table stays the truth: a wake-up carries no event, so one that is lost
(Redis restarting, a process subscribing a moment late) costs only time, never an event:
streams then catch up from the hub's poll of the workspaces' counters (every second while
Redis is away, every few seconds as a safety net while it is there). On SQLite every process
shares one file, and `PRAGMA data_version` already tells a process about the others' commits.
"""

import asyncio
import logging
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


def url() -> str | None:
    return _url


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
    global _client, _quiet_until
    if _url is None or not pairs:
        return
    try:
        client = _client
        if client is None:
            import redis

            with _lock:
                client = _client = _client or redis.Redis.from_url(
                    _url, socket_timeout=0.5, socket_connect_timeout=0.5)
        client.publish(CHANNEL, encode(pairs))
    except Exception as exc:
        if time.monotonic() > _quiet_until:
            _quiet_until = time.monotonic() + 60
            log.warning("chat wake-up not published (other processes poll instead): %s", exc)


class Listener:
    """The hub's side: an asyncio task that subscribes to the channel and calls
    `on_wake(pairs)` on the loop for each message, `on_state(connected)` when the
    subscription is made or lost. Reconnects after a second (then up to RETRY_MAX)."""

    RETRY_MAX = 5.0

    def __init__(self, redis_url: str, on_wake, on_state):
        self.url, self.on_wake, self.on_state = redis_url, on_wake, on_state
        self.publisher = None
        self.pending = set()  # publish tasks, kept referenced until done

    async def run(self) -> None:
        import redis.asyncio as aioredis

        delay = 1.0
        while True:
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(CHANNEL)
                self.on_state(True)
                delay = 1.0
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.on_wake(decode(message.get("data", b"")))
            except Exception as exc:  # Redis away or restarting: poll meanwhile, then again
                log.warning("chat wake-ups from Redis lost (polling meanwhile): %s", exc)
            finally:
                self.on_state(False)
                try:
                    await client.aclose()
                except Exception:
                    pass
            await asyncio.sleep(delay)
            delay = min(self.RETRY_MAX, delay * 2)

    def publish(self, loop, pairs) -> None:
        """From the loop (the chat writer after its commit): publish without waiting."""
        if not pairs:
            return
        task = loop.create_task(self._publish(encode(pairs)))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _publish(self, payload: bytes) -> None:
        global _quiet_until
        try:
            if self.publisher is None:
                import redis.asyncio as aioredis

                self.publisher = aioredis.Redis.from_url(
                    self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            await self.publisher.publish(CHANNEL, payload)
        except Exception as exc:
            self.publisher = None
            if time.monotonic() > _quiet_until:
                _quiet_until = time.monotonic() + 60
                log.warning("chat wake-up not published (other processes poll instead): %s", exc)

    async def close(self) -> None:
        for task in list(self.pending):
            task.cancel()
        if self.publisher is not None:
            try:
                await self.publisher.aclose()
            except Exception:
                pass

