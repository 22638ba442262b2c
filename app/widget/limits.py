"""How fast a visitor may send messages: one rule, counted in one place, whether the message
arrives as text or with a file, through the one chat-write route (app/chat/wire.py)."""

from flask import current_app
from limits import parse

from app.extensions import limiter

PER_VISITOR = parse("20/minute")
PER_SITE = parse("600/minute")  # one abusive page cannot flood a whole site's inbox
SCOPE = "widget-messages"
UPLOADS_PER_VISITOR = parse("10 per 10 minutes")  # files are tighter: counted only with one
UPLOAD_SCOPE = "widget-uploads"


def _allowed(keys, scope) -> bool:
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return True
    strategy = limiter.limiter
    if not all(strategy.test(item, scope, key) for item, key in keys):
        return False
    for item, key in keys:
        strategy.hit(item, scope, key)
    return True


def upload_allowed(visitor) -> bool:
    """Counts one attached file of this visitor and says whether it is within the limit."""
    return _allowed(((UPLOADS_PER_VISITOR, f"visitor:{visitor.id}"),), UPLOAD_SCOPE)


def message_allowed(site, visitor) -> bool:
    """Counts this message and says whether it is within both limits. A refused message
    counts nothing, so a visitor who waits is let through again on time."""
    return _allowed(((PER_VISITOR, f"visitor:{visitor.id}"), (PER_SITE, f"site:{site.id}")),
                    SCOPE)
