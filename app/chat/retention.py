"""Retention: conversations older than their site's window, deleted in small batches so that
live chat keeps answering while the clean-up runs (each batch is its own short transaction)."""

import time
from datetime import timedelta

from peewee import fn

from app.chat import events, live, service
from app.chat.models import ChatEvent, Conversation, Presence
from app.db import database, utcnow
from app.widget.models import Site, Visitor

# Measured by tests/bench/bench_privacy.py --quick (100,000 expired messages purged by the
# worker while 100 chat messages a second flow; 2 shared cores). SQLite has one writer, and the
# web process's chat writer never waits for it on the event loop: it asks again every 2 ms
# (app/chat/writer.py). With 200 conversations a batch and no pause, each batch held the lock
# ~50 ms and the next took it again within a millisecond, so the chat writer seldom got in:
# delivery went from p50 7 / p99 15 ms (idle) to p50 660 / p99 1,470 ms during the purge
# (purge: 8 s). With what follows: p50 7 / p99 27 ms idle, p50 12 / p99 87 ms during (purge:
# 34 s). Still short of "p99 within 20 % of idle": what is left is each batch's few ms of
# lock, the purge's own CPU, and the web process rendering every deletion for open inboxes.
# The price is time: 1,000,000 messages took 572 s alone (73 s of CPU) where bare sqlite3
# took 75 s, on a machine busy with other work; the rests grow with the batches' wall time.
BATCH = 20  # conversations a transaction (~200 messages): the lock is held ~7 ms a batch
# After each batch the purge rests twice as long as the batch took (at least MIN_REST): it
# holds the lock a third of the time at most, however slow the machine is at that moment.
REST = 2.0
MIN_REST = 0.01
# Each purged message leaves a tombstone in the search index (FTS5, whose automatic merging is
# off: migration 8), one new segment a batch; at 16 segments to a level FTS5 merges them inside
# the batch that wrote the 16th ("crisis merge"), which held the lock ~300 ms. A bounded merge
# step after each batch, as the worker's search upkeep does, keeps every level below that.
SEARCH_MERGE_PAGES = 64
VISITOR_BATCH = 500  # idle visitors a transaction (one statement for all of them held ~0.3 s)


def _rest(since: float) -> None:
    time.sleep(max(MIN_REST, REST * (time.perf_counter() - since)))


def purge_expired(now=None) -> int:
    """Delete conversations whose last activity is older than their site's retention days."""
    now = now or utcnow()
    deleted = 0
    for site in Site.select(Site.id, Site.retention_days):
        cutoff = now - timedelta(days=site.retention_days)
        while True:
            started = time.perf_counter()
            rows = list(Conversation.select(Conversation.id, Conversation.workspace).where(
                (Conversation.site == site.id) & (Conversation.last_activity_at < cutoff)).limit(BATCH))
            if not rows:
                break
            ids = [c.id for c in rows]
            with database.atomic():
                ChatEvent.delete().where(ChatEvent.conversation_id.in_(ids)).execute()
                Conversation.delete().where(Conversation.id.in_(ids)).execute()
                # Open inboxes and widgets drop them live, as for any other deletion.
                events.record([live.Written(None, c.workspace_id, c.id, ChatEvent.DELETED,
                                            actor="retention") for c in rows])
            deleted += len(ids)
            service.merge_search_index(SEARCH_MERGE_PAGES)
            _rest(started)
        # Visitors with nothing left and not seen within the window go as well.
        idle = Visitor.select(Visitor.id).where(
            (Visitor.site == site.id) & (Visitor.last_seen_at < cutoff)
            & ~fn.EXISTS(Conversation.select().where(Conversation.visitor == Visitor.id)))
        while True:
            started = time.perf_counter()
            ids = [v.id for v in idle.limit(VISITOR_BATCH)]
            if not ids:
                break
            with database.atomic():
                Visitor.delete().where(Visitor.id.in_(ids)).execute()
            _rest(started)
    if deleted:
        live.notify()
    return deleted


def purge_stale_events(now=None) -> int:
    """Typing and read events matter only for a moment; keep a day of them for reconnects.
    Presence rows of streams that ended without saying goodbye go too."""
    now = now or utcnow()
    cutoff = now - timedelta(days=1)
    removed = 0
    while True:
        ids = [e.id for e in ChatEvent.select(ChatEvent.id).where(
            (ChatEvent.created_at < cutoff)
            & ChatEvent.kind.in_([ChatEvent.TYPING, ChatEvent.READ])).limit(1000)]
        if not ids:
            break
        ChatEvent.delete().where(ChatEvent.id.in_(ids)).execute()
        removed += len(ids)
    Presence.delete().where(Presence.seen_at < now - timedelta(minutes=5)).execute()
    return removed
