"""How fast a visitor may send messages: one rule, counted in one place, whether the message
arrives through the Flask view or the Starlette hot path (app/hot.py)."""

from flask import current_app
from limits import parse

from app.extensions import limiter

PER_VISITOR = parse("20/minute")
PER_SITE = parse("600/minute")  # one abusive page cannot flood a whole site's inbox
SCOPE = "widget-messages"


def message_allowed(site, visitor) -> bool:
    """Counts this message and says whether it is within both limits. A refused message
    counts nothing, so a visitor who waits is let through again on time."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return True
    strategy = limiter.limiter
    keys = ((PER_VISITOR, f"visitor:{visitor.id}"), (PER_SITE, f"site:{site.id}"))
    if not all(strategy.test(item, SCOPE, key) for item, key in keys):
        return False
    for item, key in keys:
        strategy.hit(item, SCOPE, key)
    return True
