"""The ASGI root: sse-starlette streams first, everything else handed to Flask through a2wsgi.

Streams live here because an idle async stream costs a few KB, while each open request in
Flask would hold one of a small pool of threads.
"""

import contextlib
import logging
import time

import anyio
from a2wsgi import WSGIMiddleware
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from sse_starlette import EventSourceResponse

from app import create_app
from app.chat import live, service, streams
from app.db import connection
from app.models import Membership, User

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class QueryStringFilter(logging.Filter):
    """Keeps query strings out of the access log: stream tickets travel there, and a log is
    no place for anything that opens a conversation."""

    def filter(self, record):
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = args[2].split("?", 1)[0]
            record.args = tuple(args)
        return True


def session_user(flask_app, cookie: str | None):
    """(user, membership) of a Flask session cookie, checked exactly as a Flask request would."""
    if not cookie:
        return None
    serializer = flask_app.session_interface.get_signing_serializer(flask_app)
    max_age = int(flask_app.permanent_session_lifetime.total_seconds())
    try:
        data = serializer.loads(cookie, max_age=max_age)
    except Exception:  # bad signature, expired, or garbage: not logged in
        return None
    now = int(time.time())
    if (now - data.get("iat", 0) > flask_app.config["SESSION_MAX"].total_seconds()
            or now - data.get("seen", 0) > flask_app.config["SESSION_IDLE"].total_seconds()):
        return None
    with connection():
        user = User.get_or_none(User.id == data.get("uid"))
        if user is None or user.session_epoch != data.get("ep"):
            return None
        memberships = list(Membership.of(user))
    if not memberships:
        return None
    chosen = next((m for m in memberships if m.workspace_id == data.get("ws")), memberships[0])
    return user, chosen


def build(flask_app=None) -> Starlette:
    flask_app = flask_app or create_app()
    logging.getLogger("uvicorn.access").addFilter(QueryStringFilter())
    cookie_name = flask_app.config["SESSION_COOKIE_NAME"]
    hub = live.Hub(flask_app.config["DATABASE"], streams.fetch_after, streams.max_event_id)

    def sse(events):
        return EventSourceResponse(events, ping=streams.HEARTBEAT_SECONDS, send_timeout=10,
                                   headers=SSE_HEADERS)

    async def dashboard_stream(request):
        found = await anyio.to_thread.run_sync(session_user, flask_app, request.cookies.get(cookie_name))
        if found is None:
            return PlainTextResponse("Log in to receive live updates.", status_code=401)
        user, membership = found
        presence = streams.Presences("agent", membership.workspace_id, user.id)
        return sse(streams.follow(flask_app, hub, streams.agent_render, streams.parse_after(request),
                                  presence, heartbeat=streams.status_heartbeat(flask_app),
                                  workspace_id=membership.workspace_id))

    async def visitor_stream(request):
        def check():
            with flask_app.app_context():
                return service.visitor_stream_scope(request.query_params.get("ticket", ""))
        scope = await anyio.to_thread.run_sync(check)
        if scope is None:
            return PlainTextResponse("This chat link is not valid any more.", status_code=403)
        workspace_id, conversation_id = scope
        presence = streams.Presences("visitor", workspace_id, conversation_id)
        return sse(streams.follow(flask_app, hub, streams.visitor_render, streams.parse_after(request),
                                  presence, conversation_id=conversation_id))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await hub.start()
        live.install(hub)
        try:
            yield
        finally:
            live.uninstall()
            await hub.stop()

    routes = [
        Route("/sse/dashboard", dashboard_stream),
        Route("/sse/visitor", visitor_stream),
        Mount("/", WSGIMiddleware(flask_app)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.flask_app = flask_app
    app.state.hub = hub
    return app


def __getattr__(name):
    # `uvicorn app.asgi:app` builds the app on first access, not at import time.
    if name == "app":
        globals()["app"] = build()
        return globals()["app"]
    raise AttributeError(name)
