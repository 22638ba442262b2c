"""The widget's side of the chat: a site found by its key, what the loader is told before it
shows anything (the page's origin allowed or not, the launcher's label and colours), where the
widget was loaded from, its visitors and their signed tokens, the stream tickets and file links
a visitor's browser carries."""

import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from peewee import EXCLUDED, Case

from app import insight
from app.accounts.models import Workspace
from app.billing import limits as billing
from app.chat.models import Attachment, Conversation
from app.db import Prepared, database, thread_connection, utcnow
from app.errors import RuleError
from app.shortcache import cache_for
from app.widget.colours import launcher_theme
from app.widget.models import OriginSeen, Site, Visitor

VISITOR_TOKEN_AGE = timedelta(days=365)
STREAM_TICKET_AGE = timedelta(hours=12)
ATTACHMENT_LINK_AGE = timedelta(days=1)

# The widget's hot path looks these up on every request: built once (see app.db.Prepared).
# A suspended workspace's sites are not found, in the same one query: its widget answers the
# "unavailable" page on every route (app/staff/service.py suspend()).
SITE_BY_KEY = Prepared(lambda site_key: Site.select(Site).join(Workspace).where(
    (Site.site_key == site_key) & (Site.enabled == True)  # noqa: E712
    & Workspace.suspended_at.is_null()).limit(1))
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
    new = site.id is None
    if new:
        billing.check_new_site(site.workspace_id)
    fields["allowed_origins"] = clean_origins(fields.get("allowed_origins", ""))
    for name, value in fields.items():
        setattr(site, name, value)
    with database.atomic():
        site.save()
        # An origin no longer allowed keeps no "last loaded" line; if it tries again it shows
        # among the refused ones.
        OriginSeen.delete().where((OriginSeen.site == site.id) & OriginSeen.allowed
                                  & OriginSeen.origin.not_in(site.origins)).execute()
    forget_site(site.id)  # the widget sees the new settings at once
    if new:
        insight.count("site.created")
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


def forget_sites_of(workspace_id: int) -> None:
    """Drop every cached site of a workspace at once (it was suspended or reinstated)."""
    for site in Site.select(Site.id).where(Site.workspace == workspace_id):
        forget_site(site.id)


def forget_visitor(visitor_id: int) -> None:
    """Drop the visitor's cached rows at once (their details or conversations deleted)."""
    _cache().drop(("visitor", visitor_id))


# --- what the loader learns before it shows anything ------------------------------------------------


SIGHTING_WRITE_SECONDS = 60  # an origin's row is written at most this often per process
REFUSED_KEPT = timedelta(days=7)  # refused origins are shown, and kept, this long
REFUSED_PER_SITE = 50  # at most this many refused origins kept per site (anyone can send any)


def widget_status(site_key: str, origin: str) -> dict:
    """What the loader on a page of `origin` is told before it shows anything: whether the
    site lets its widget load there, and if so the launcher's label, colours and whether it
    waits for the page's consent; if not, the one console message that says what to fix.
    Nothing here is secret (anyone can load the page): the allowed origins are not listed."""
    site = site_by_key(site_key)
    if site is None:
        return {"allowed": False, "message": (
            f"Lumnar chat: no site has the key “{site_key[:80]}”, or its widget is switched "
            "off. Copy the snippet again from the site's page in the Lumnar dashboard (Sites).")}
    try:
        origin = normalize_origin(origin)
    except RuleError:
        return {"allowed": False, "message": (
            "Lumnar chat is not shown on this page: the page has no web origin (a file, or a "
            "sandboxed frame). The chat loads on pages served over http or https from one of "
            "the site's allowed origins.")}
    allowed = origin in site.origins
    seen(site.id, origin, allowed)
    if not allowed:
        return {"allowed": False, "message": (
            f"Lumnar chat is not shown on this page: {origin} is not an allowed origin of the "
            f"site “{site.name}”. To show the chat here, add {origin} to the allowed origins "
            f"on the site's page in the Lumnar dashboard (Sites → {site.name}).")}
    return {"allowed": True, "label": site.launcher_label, "consent": site.consent_required,
            "theme": launcher_theme(site.accent_color)}


class Sightings:
    """A process's memory of the origin rows it wrote lately: a page view writes its origin's
    row only when this process has not written it for SIGHTING_WRITE_SECONDS (the loads seen
    meanwhile are added then), so the status answer, asked on every page view of every
    customer's site, costs a write at most once a minute per origin."""

    KEPT = 10_000  # past that many, forget them all (rows are then written once more)

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = {}  # (site id, origin, allowed) -> [monotonic time written, loads since]

    def due(self, key) -> int:
        """Count one load; the loads to write now (0: not yet)."""
        now = time.monotonic()
        with self.lock:
            row = self.rows.get(key)
            if row is None:
                if len(self.rows) >= self.KEPT:
                    self.rows.clear()
                self.rows[key] = [now, 0]
                return 1
            row[1] += 1
            if now - row[0] < SIGHTING_WRITE_SECONDS:
                return 0
            loads, row[0], row[1] = row[1], now, 0
            return loads


def _sightings() -> Sightings:
    return current_app.extensions.setdefault("widget_sightings", Sightings())


def seen(site_id: int, origin: str, allowed: bool) -> None:
    """The site's widget was asked to load on a page of `origin` (see Sightings)."""
    loads = _sightings().due((site_id, origin, allowed))
    if not loads:
        return
    now = utcnow()
    with database.atomic():
        if not allowed:
            # Refused origins are bounded: old ones go, and past REFUSED_PER_SITE a new one is
            # not kept (those already kept are still counted).
            OriginSeen.delete().where((OriginSeen.site == site_id) & ~OriginSeen.allowed
                                      & (OriginSeen.last_seen_at < now - REFUSED_KEPT)).execute()
            known = OriginSeen.select().where((OriginSeen.site == site_id)
                                              & (OriginSeen.origin == origin)).exists()
            if not known and OriginSeen.select().where(
                    (OriginSeen.site == site_id) & ~OriginSeen.allowed).count() >= REFUSED_PER_SITE:
                return
        # One row per site and origin; its count starts again when the answer changes.
        (OriginSeen.insert(site=site_id, origin=origin, allowed=allowed, loads=loads,
                           last_seen_at=now)
         .on_conflict(conflict_target=[OriginSeen.site, OriginSeen.origin], update={
             OriginSeen.loads: Case(None, [(OriginSeen.allowed == EXCLUDED.allowed,
                                            OriginSeen.loads + EXCLUDED.loads)], EXCLUDED.loads),
             OriginSeen.allowed: EXCLUDED.allowed,
             OriginSeen.last_seen_at: EXCLUDED.last_seen_at})
         .execute())


def origins_seen(site: Site) -> tuple[list, list]:
    """For the site's page: (each allowed origin with its row or None, by the site's order),
    (the origins refused in the last REFUSED_KEPT, newest first)."""
    rows = list(OriginSeen.select().where(OriginSeen.site == site.id))
    loaded = {row.origin: row for row in rows if row.allowed}
    since = utcnow() - REFUSED_KEPT
    refused = sorted((row for row in rows if not row.allowed and row.last_seen_at >= since),
                     key=lambda row: row.last_seen_at, reverse=True)
    return [(origin, loaded.get(origin)) for origin in site.origins], refused


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


def stream_ticket(conversation, visitor: Visitor, language: str = "en") -> str:
    """What goes in the visitor's stream URL instead of the token (URLs end up in logs): the
    conversation, its workspace (the stream follows the workspace's events from the start,
    before the ticket is checked against the database), the visitor, and the language the
    chat was shown in (the stream's words are in it too: app/chat/live.py, audiences)."""
    return _signer("visitor-stream").dumps(
        {"c": conversation.id, "w": conversation.workspace_id, "v": visitor.public_id,
         "l": language})


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
