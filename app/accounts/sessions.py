"""Who is logged in: the signed-cookie session, its lifetimes and its revocation.

The cookie carries the user id, the user's session epoch at log-in, the log-in time and the
last-seen time. A session ends when it is idle too long, older than the absolute lifetime,
or when the user's epoch has moved on (password change, "log out everywhere").
"""

import time
from functools import wraps

from flask import abort, current_app, flash, g, redirect, request, session, url_for

from app.models import Membership, User

# Refresh "last seen" at most this often, so that not every request rewrites the cookie.
SEEN_GRANULARITY = 60


def init_app(app):
    app.before_request(load_user)
    app.context_processor(lambda: {"current_user": g.get("user"), "membership": g.get("membership")})


def load_user():
    g.user = None
    g.membership = None
    uid = session.get("uid")
    if uid is None:
        return
    now = int(time.time())
    idle = current_app.config["SESSION_IDLE"].total_seconds()
    absolute = current_app.config["SESSION_MAX"].total_seconds()
    user = User.get_or_none(User.id == uid)
    if (
        user is None
        or session.get("ep") != user.session_epoch
        or now - session.get("iat", 0) > absolute
        or now - session.get("seen", 0) > idle
    ):
        session.clear()
        return
    if now - session.get("seen", 0) > SEEN_GRANULARITY:
        session["seen"] = now
    g.user = user
    g.membership = current_membership(user)


def current_membership(user):
    memberships = list(Membership.of(user))
    if not memberships:
        return None
    chosen = session.get("ws")
    for m in memberships:
        if m.workspace_id == chosen:
            return m
    return memberships[0]


def login_user(user: User) -> None:
    # A fresh session on log-in: nothing from before (including a CSRF token) carries over.
    session.clear()
    now = int(time.time())
    session.permanent = True
    session.update(uid=user.id, ep=user.session_epoch, iat=now, seen=now)


def logout_user() -> None:
    session.clear()


def refresh_epoch(user: User) -> None:
    """Keep this session alive after the user's epoch moved (their own password change)."""
    session["ep"] = user.session_epoch


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
