"""Who is logged in: the signed-cookie session, its lifetimes and its revocation.

The cookie carries the id of a UserSession row, the log-in time and the last-seen time. A
session ends when it is idle too long, older than the absolute lifetime, or when its row is
gone (log out, "log out everywhere", a password change, or "log out" on one device in the
settings).
"""

import secrets
import time
from functools import wraps

from flask import abort, current_app, flash, g, redirect, request, session, url_for

from app.accounts.models import Membership, User, UserSession
from app.db import Prepared, thread_connection, utcnow
from app.shortcache import cache_for

# Refresh "last seen" at most this often, so that not every request writes.
SEEN_GRANULARITY = 60


def init_app(app):
    app.before_request(load_user)
    app.context_processor(lambda: {"current_user": g.get("user"), "membership": g.get("membership")})


# Asked on every signed-in request: built once (see app.db.Prepared).
SESSION_ROW = Prepared(lambda sid: UserSession.select(UserSession, User).join(User)
                       .where(UserSession.sid == sid).limit(1))
MEMBERSHIPS = Prepared(lambda user_id: Membership.of(user_id))


def within_lifetimes(config, data) -> bool:
    """The cookie's own checks, no database: it names a session, and neither the absolute nor
    the idle lifetime has run out. Run on every request, cached or not."""
    if not data.get("sid"):
        return False
    now = int(time.time())
    return not (now - data.get("iat", 0) > config["SESSION_MAX"].total_seconds()
                or now - data.get("seen", 0) > config["SESSION_IDLE"].total_seconds())


def session_row(data) -> UserSession | None:
    """The live session row for decoded cookie data, checking both lifetimes."""
    if not within_lifetimes(current_app.config, data):
        return None
    return SESSION_ROW.first(data["sid"])


def _cache(flask_app):
    return cache_for(flask_app, "sessions")


def forget_user(user_id: int, flask_app=None) -> None:
    """Drop this process's cached sessions of a user at once (log out, sessions ended, removed
    from a workspace); other processes see it within SHORT_CACHE_SECONDS."""
    _cache(flask_app or current_app).drop(user_id)


def decode(flask_app, cookie: str | None) -> dict | None:
    """The data of a session cookie whose signature and age hold, else None."""
    if not cookie:
        return None

    def opened():
        serializer = flask_app.session_interface.get_signing_serializer(flask_app)
        max_age = int(flask_app.permanent_session_lifetime.total_seconds())
        try:
            return serializer.loads(cookie, max_age=max_age)
        except Exception:  # bad signature, expired, or garbage: not logged in
            return None

    # A cookie's signature is checked once per few seconds (the short cache): every reply of
    # an agent carries the same cookie, and checking it cost as much as the reply's writes.
    # Revocation is not decided here but by check(), whose rows are dropped at once.
    data = _cache(flask_app).get(("cookie", cookie), opened)
    return dict(data) if data is not None else None


def check(flask_app, data: dict | None):
    """(session row, membership or None) for decoded cookie data: both lifetimes, the row not
    revoked. None when not logged in."""
    if not data or not within_lifetimes(flask_app.config, data):
        return None

    def load():
        with flask_app.app_context(), thread_connection():
            row = SESSION_ROW.first(data["sid"])
            return None if row is None else (row, current_membership(row.user, data.get("ws")))

    # The rows are shared by the requests of the next few seconds: read, never changed.
    return _cache(flask_app).get((data["sid"], data.get("ws")), load,
                                 tag_of=lambda found: found[0].user_id)


def from_cookie(flask_app, cookie: str | None):
    """(session data, session row, membership) of a session cookie, checked as a Flask request
    checks it (signature, both lifetimes, the row not revoked), for code that serves a request
    outside Flask (the streams, the chat writes). None when any check fails."""
    data = decode(flask_app, cookie)
    found = check(flask_app, data)
    if found is None or found[1] is None:
        return None
    return data, found[0], found[1]


def seen_due(data: dict) -> bool:
    return int(time.time()) - data.get("seen", 0) > SEEN_GRANULARITY


def refreshed_cookie(flask_app, data: dict):
    """(name, value, attributes) of the session cookie with "seen" moved to now, built with the
    session interface's public getters, as Flask would send it again."""
    interface = flask_app.session_interface
    session_data = interface.session_class({**data, "seen": int(time.time())})
    value = interface.get_signing_serializer(flask_app).dumps(dict(session_data))
    attributes = dict(
        expires=interface.get_expiration_time(flask_app, session_data),
        path=interface.get_cookie_path(flask_app), domain=interface.get_cookie_domain(flask_app),
        secure=interface.get_cookie_secure(flask_app),
        httponly=interface.get_cookie_httponly(flask_app),
        samesite=interface.get_cookie_samesite(flask_app))
    return interface.get_cookie_name(flask_app), value, attributes


def touch_seen(flask_app, row_id: int) -> None:
    """The session row's "last seen", written after the answer has gone (the chat writes run
    it as a background task), never on a reply's path."""
    with flask_app.app_context(), thread_connection():
        UserSession.update(last_seen_at=utcnow()).where(UserSession.id == row_id).execute()


def load_user():
    g.user = None
    g.membership = None
    g.session_row = None
    if "sid" not in session:
        return
    row = session_row(session)
    if row is None:
        session.clear()
        return
    now = int(time.time())
    if now - session.get("seen", 0) > SEEN_GRANULARITY:
        session["seen"] = now
        UserSession.update(last_seen_at=utcnow()).where(UserSession.id == row.id).execute()
    g.user = row.user
    g.session_row = row
    g.membership = current_membership(row.user, session.get("ws"))


def current_membership(user, chosen: int | None):
    """The workspace the user chose (session "ws"), or their first one."""
    memberships = list(MEMBERSHIPS.rows(user.id))
    if not memberships:
        return None
    for m in memberships:
        if m.workspace_id == chosen:
            return m
    return memberships[0]


def login_user(user: User) -> None:
    # A fresh session on log-in: nothing from before (including a CSRF token) carries over.
    session.clear()
    row = UserSession.create(sid=secrets.token_urlsafe(32), user=user,
                             user_agent=(request.user_agent.string or "")[:200])
    now = int(time.time())
    session.permanent = True
    session.update(sid=row.sid, iat=now, seen=now)


def logout_user() -> None:
    sid = session.get("sid")
    if sid:
        UserSession.delete().where(UserSession.sid == sid).execute()
        if g.get("user") is not None:
            forget_user(g.user.id)
    session.clear()


def end_sessions(user: User, keep_current: bool = False) -> None:
    """End every session of `user` (or every other one, keeping this browser's)."""
    query = UserSession.delete().where(UserSession.user == user)
    if keep_current and session.get("sid"):
        query = query.where(UserSession.sid != session["sid"])
    query.execute()
    forget_user(user.id)


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.get("user") is None:
            if request.htmx:
                # A redirect would be swapped into the page; tell htmx to navigate instead.
                resp = current_app.make_response(("", 401))
                resp.headers["HX-Redirect"] = url_for("accounts.login_form", next=request.path)
                return resp
            flash("Please log in to continue.", "info")
            return redirect(url_for("accounts.login_form", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper


def owner_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if g.membership is None or not g.membership.is_owner:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def workspace_id() -> int:
    """The current member's workspace; 404 for a user who belongs to none."""
    if g.get("membership") is None:
        abort(404)
    return g.membership.workspace_id


def scoped_or_404(model, record_id):
    """A record of the current workspace by id. Another workspace's id gets 404, never 403,
    so ids reveal nothing about other customers."""
    record = model.get_or_none((model.id == record_id) & (model.workspace == workspace_id()))
    if record is None:
        abort(404)
    return record
