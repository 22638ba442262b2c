"""The widget's side of the chat: a site found by its key, its visitors and their signed tokens,
the stream tickets and file links a visitor's browser carries."""

from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.chat.models import Attachment, Conversation
from app.db import Prepared, thread_connection
from app.errors import RuleError
from app.shortcache import cache_for
from app.widget.models import Site, Visitor

VISITOR_TOKEN_AGE = timedelta(days=365)
STREAM_TICKET_AGE = timedelta(hours=12)
ATTACHMENT_LINK_AGE = timedelta(days=1)

# The widget's hot path looks these up on every request: built once (see app.db.Prepared).
SITE_BY_KEY = Prepared(lambda site_key: Site.select().where(
    (Site.site_key == site_key) & (Site.enabled == True)).limit(1))  # noqa: E712
VISITOR_BY_PUBLIC_ID = Prepared(lambda public_id, site_id: Visitor.select().where(
    (Visitor.public_id == public_id) & (Visitor.site == site_id)).limit(1), arity=2)


# --- sites' settings ------------------------------------------------------------------------------------


def normalize_origin(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise RuleError(f"“{value.strip()[:80]}” is not an origin like https://shop.example.com",
                        field="allowed_origins")
    host = parts.hostname.lower()
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def clean_origins(text: str) -> str:
    origins = []
    for line in text.replace(",", "\n").split():
        origin = normalize_origin(line)
        if origin not in origins:
            origins.append(origin)
    if not origins:
        raise RuleError("Add at least one origin where the widget may appear.", field="allowed_origins")
    if len(origins) > 20:
        raise RuleError("At most 20 origins per site.", field="allowed_origins")
    return "\n".join(origins)


def save_site(site: Site, **fields) -> Site:
    fields["allowed_origins"] = clean_origins(fields.get("allowed_origins", ""))
    for name, value in fields.items():
        setattr(site, name, value)
    site.save()
    forget_site(site.id)  # the widget sees the new settings at once
    return site


def _cache():
    return cache_for(current_app, "widget")


def site_by_key(site_key: str) -> Site | None:
    """The site of a widget key, from the short cache (asked on every visitor message); a site
    saved here is dropped from it at once, one changed by another process within seconds.
    The row is shared by the requests of those seconds: read it, never change it."""
    return _cache().get(("site", site_key), lambda: SITE_BY_KEY.first(site_key),
                        tag_of=lambda site: ("site", site.id))


def forget_site(site_id: int) -> None:
    """Drop the site's cached row at once (its settings were saved)."""
    _cache().drop(("site", site_id))


def forget_visitor(visitor_id: int) -> None:
    """Drop the visitor's cached rows at once (their details or conversations deleted)."""
    _cache().drop(("visitor", visitor_id))


def _signer(purpose):
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"lumnar.{purpose}")


def new_visitor(site: Site, page_url: str = "") -> tuple[Visitor, str]:
    visitor = Visitor.create(site=site, first_page_url=page_url[:2000])
    return visitor, visitor_token(visitor)


def visitor_token(visitor: Visitor) -> str:
    return _signer("visitor").dumps({"v": visitor.public_id, "s": visitor.site_id})


def visitor_from_token(site: Site, token: str | None) -> Visitor | None:
    if not token:
        return None
    # The signature is checked once per token per few seconds (the short cache): a year-long
    # token's validity does not change in that time, and checking it cost more than the
    # message's own statements (profiled).
    data = _cache().get(("token", token), lambda: _opened_visitor_token(token))
    if not isinstance(data, dict) or data.get("s") != site.id:
        return None
    # The signature and age above are checked every time; only the row comes from the cache.
    return _cache().get(("visitor", site.id, data.get("v")),
                        lambda: VISITOR_BY_PUBLIC_ID.first(data.get("v"), site.id),
                        tag_of=lambda visitor: ("visitor", visitor.id))


def _opened_visitor_token(token: str) -> dict | None:
    try:
        return _signer("visitor").loads(token, max_age=int(VISITOR_TOKEN_AGE.total_seconds()))
    except BadSignature:
        return None


def stream_ticket(conversation, visitor: Visitor) -> str:
    """What goes in the visitor's stream URL instead of the token (URLs end up in logs): the
    conversation, its workspace (the stream follows the workspace's events from the start,
    before the ticket is checked against the database) and the visitor."""
    return _signer("visitor-stream").dumps(
        {"c": conversation.id, "w": conversation.workspace_id, "v": visitor.public_id})


def read_stream_ticket(ticket: str) -> dict | None:
    try:
        return _signer("visitor-stream").loads(ticket, max_age=int(STREAM_TICKET_AGE.total_seconds()))
    except BadSignature:
        return None


def attachment_link_token(attachment_id: int) -> str:
    return _signer("attachment").dumps(attachment_id)


def attachment_from_link(token: str) -> Attachment | None:
    try:
        attachment_id = _signer("attachment").loads(
            token, max_age=int(ATTACHMENT_LINK_AGE.total_seconds()))
    except BadSignature:
        return None
    return Attachment.get_or_none(Attachment.id == attachment_id)


# What a visitor's stream needs of its conversation (asked on every open and recheck): two
# columns as a plain tuple, not the conversation with its visitor and site built as models.
STREAM_SCOPE = Prepared(lambda conversation_id: (
    Conversation.select(Conversation.workspace, Visitor.public_id).join(Visitor)
    .where(Conversation.id == conversation_id).limit(1).tuples()))


def visitor_stream_scope(ticket: str, claim: dict | None = None):
    """(workspace id, conversation id) a visitor's stream ticket grants, or None. `claim`: the
    ticket already read by read_stream_ticket() (its signature is then not checked twice)."""
    data = claim if claim is not None else (read_stream_ticket(ticket) if ticket else None)
    if not data:
        return None
    with thread_connection():  # called from the streams' worker threads
        found = STREAM_SCOPE.first(data.get("c"))
    if found is None or found[1] != data.get("v"):
        return None
    return found[0], data.get("c")
