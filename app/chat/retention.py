"""Retention: conversations older than their site's window, deleted in small batches so that
live chat keeps answering while the clean-up runs (each batch is its own short transaction)."""

from datetime import timedelta

from peewee import fn

from app.chat import events, live
from app.chat.models import ChatEvent, Conversation, Presence
from app.db import database, utcnow
from app.widget.models import Site, Visitor

BATCH = 200


def purge_expired(now=None) -> int:
    """Delete conversations whose last activity is older than their site's retention days."""
    now = now or utcnow()
    deleted = 0
    for site in Site.select(Site.id, Site.retention_days):
        cutoff = now - timedelta(days=site.retention_days)
        while True:
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
        # Visitors with nothing left and not seen within the window go as well.
        idle = Visitor.select(Visitor.id).where(
            (Visitor.site == site.id) & (Visitor.last_seen_at < cutoff)
            & ~fn.EXISTS(Conversation.select().where(Conversation.visitor == Visitor.id)))
        Visitor.delete().where(Visitor.id.in_(idle)).execute()
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

