"""A small in-process cache with a short lifetime, for rows asked on every chat message.

Who a session or a visitor token belongs to hardly ever changes, yet every reply, every
visitor message and every stream asked the database again. Entries live a few seconds
(SHORT_CACHE_SECONDS): what this process changes (log out, "log out everywhere", a member
removed, a conversation deleted) drops the matching entries at once; what another process
changes (the worker, a second web process) takes effect within that lifetime.
"""

import threading
import time
from collections import OrderedDict

# Long enough that a busy conversation's messages share one look-up, short enough that a
# session revoked by another process ends within seconds.
DEFAULT_SECONDS = 5.0
# Bounded: one entry per active session or visitor; the oldest used goes first.
DEFAULT_SIZE = 4096


class ShortCache:
    """key -> (value, tag), each entry for `lifetime` seconds; least recently used evicted
    beyond `size`. Thread-safe: the chat writes run in worker threads."""

    def __init__(self, lifetime: float = DEFAULT_SECONDS, size: int = DEFAULT_SIZE):
        self.lifetime, self.size = lifetime, size
        self._entries = OrderedDict()  # key -> (expires, tag, value)
        self._lock = threading.Lock()
        # Bumped by every drop: a value loaded while a drop happened may be the row just
        # deleted, so it is returned but not kept.
        self._generation = 0

    def get(self, key, load, tag_of=lambda value: None):
        """The value for `key`, from `load()` when absent or expired. A None from load() is
        not kept (the next ask goes to the database again)."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(key)
                return entry[2]
            generation = self._generation
        value = load()
        if value is not None and self.lifetime > 0:
            with self._lock:
                if generation != self._generation:
                    return value
                self._entries[key] = (now + self.lifetime, tag_of(value), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return value

    def drop(self, tag) -> None:
        """Forget every entry tagged `tag` (a user, a visitor, a site)."""
        with self._lock:
            self._generation += 1
            for key in [k for k, e in self._entries.items() if e[1] == tag]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


def cache_for(flask_app, name: str) -> ShortCache:
    """The app's cache called `name` (one per app, so that two apps in one process, as in the
    tests, never see each other's rows). Lifetime from SHORT_CACHE_SECONDS."""
    caches = flask_app.extensions.setdefault("short_caches", {})
    cache = caches.get(name)
    if cache is None:
        cache = caches.setdefault(name, ShortCache(
            float(flask_app.config.get("SHORT_CACHE_SECONDS", DEFAULT_SECONDS))))
    return cache
