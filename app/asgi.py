"""The ASGI root: sse-starlette streams first, everything else handed to Flask through a2wsgi.

Streams live here because an idle async stream costs a few KB, while each open request in
Flask would hold one of a small pool of threads.
"""

import asyncio
import time
from datetime import datetime, timezone

import anyio
from a2wsgi import WSGIMiddleware
from flask import render_template
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from sse_starlette import EventSourceResponse, ServerSentEvent

from app import create_app
from app.db import connection
from app.models import User

HEARTBEAT_SECONDS = 15


def session_user(flask_app, cookie: str | None) -> User | None:
    """The user of a Flask session cookie, checked exactly as a Flask request checks it."""
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
    return user


def build(flask_app=None) -> Starlette:
    flask_app = flask_app or create_app()
    cookie_name = flask_app.config["SESSION_COOKIE_NAME"]

    def status_fragment() -> str:
        with flask_app.app_context():
            at = datetime.now(timezone.utc).strftime("%H:%M:%S")
            return render_template("dashboard/_status.html", at=at)

    async def dashboard_stream(request):
        user = await anyio.to_thread.run_sync(session_user, flask_app, request.cookies.get(cookie_name))
        if user is None:
            return PlainTextResponse("Log in to receive live updates.", status_code=401)

        async def events():
            try:
                while True:
                    html = await anyio.to_thread.run_sync(status_fragment)
                    yield ServerSentEvent(data=html, event="status")
                    await asyncio.sleep(HEARTBEAT_SECONDS)
            except asyncio.CancelledError:
                raise  # the client left or the server stops: let sse-starlette clean up

        return EventSourceResponse(events(), ping=HEARTBEAT_SECONDS, send_timeout=10,
                                   headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    routes = [
        Route("/sse/dashboard", dashboard_stream),
        Mount("/", WSGIMiddleware(flask_app)),
    ]
    app = Starlette(routes=routes)
    app.state.flask_app = flask_app
    return app


def __getattr__(name):
    # `uvicorn app.asgi:app` builds the app on first access, not at import time.
    if name == "app":
        globals()["app"] = build()
        return globals()["app"]
    raise AttributeError(name)
