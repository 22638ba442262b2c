"""The ASGI root: the chat's streams and writes first (app/chat/streams.py, app/chat/wire.py),
everything else handed to Flask through a2wsgi.

Streams are served here, outside Flask, because an idle async stream costs a few KB, while
each open request in Flask would hold one of a small pool of threads.
"""

import contextlib
import gc
import logging

import anyio
from a2wsgi import WSGIMiddleware
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount, Route

from app import create_app, db
from app.chat import live, render, streams, wire, writer
from app.security import SecurityHeaders
from app.wsgi_input import TerminatedInput

# Allocations between collections of the youngest generation. Measured in-process
# (tests/bench/profile_chat_write.py, 2,000 messages): 50,000 spent 573 ms in the collector
# with a longest pause of 127 ms; 10,000 spent 258 ms, longest 60 ms (700, Python's default,
# also 258 ms but in ten times as many pauses).
GC_YOUNG_THRESHOLD = 10_000


class QueryStringFilter(logging.Filter):
    """Keeps query strings out of the access log: stream tickets travel there, and a log is
    no place for anything that opens a conversation."""

    def filter(self, record):
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            args = list(record.args)
            args[2] = args[2].split("?", 1)[0]
            record.args = tuple(args)
        return True


def settle_garbage_collector() -> tuple:
    """Keep full collections out of the message path. Everything alive once the app has
    started (modules, templates, the app itself: most of the heap) is moved out of the
    collector's sight with gc.freeze(), and the youngest generation is collected less often:
    a long-lived server makes many short-lived objects per request, and each collection of it
    walks them all. Reference counting still frees almost everything at once; the collector
    is only for cycles."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *before[1:])
    return before


def restore_garbage_collector(threshold) -> None:
    """Undo settle_garbage_collector() at shutdown (an app served inside a longer-lived
    process, such as the tests', leaves its collector as it found it)."""
    gc.unfreeze()
    gc.set_threshold(*threshold)


class StaticGZip:
    """Compresses what holds no secret: our static files, the widget loader and the widget's
    frame page (the widget's first open is the bytes budget that matters). Pages with CSRF
    tokens or chat text stay uncompressed, so response sizes cannot leak them (BREACH)."""

    def __init__(self, app):
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=500)

    @staticmethod
    def wanted(path: str) -> bool:
        return (path.startswith("/static/") or path == "/widget.js"
                or (path.startswith("/widget/") and path.count("/") == 2))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.wanted(scope["path"]):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def build(flask_app=None) -> SecurityHeaders:
    """The root app: the Starlette routes inside the one header layer (its `.app`)."""
    flask_app = flask_app or create_app({"BACKGROUND_CHECKPOINTS": True})
    logging.getLogger("uvicorn.access").addFilter(QueryStringFilter())
    renderer = render.Renderer(flask_app)
    hub = live.Hub(flask_app.config["DATABASE_URL"] or flask_app.config["DATABASE"],
                   streams.fetch_after, presence=streams.write_presence, render=renderer.events,
                   redis_url=flask_app.config["REDIS_URL"])
    chat_writer = writer.Writer(flask_app, hub)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await hub.start()
        live.install(hub)
        threshold = settle_garbage_collector()
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(db.checkpoint_in_background, flask_app.config["DATABASE"], stop)
            try:
                yield
            finally:
                stop.set()
                live.uninstall()
                await hub.stop()
                restore_garbage_collector(threshold)

    to_flask = StaticGZip(WSGIMiddleware(TerminatedInput(flask_app)))
    streams_served = streams.routes(flask_app, hub)
    routes = [*(Route(path, endpoint) for path, endpoint in streams_served.items()),
              Mount("/", to_flask)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.flask_app = flask_app
    app.state.hub = hub
    app.state.writer = chat_writer
    # The chat writes are answered before Starlette's stack (see app/chat/wire.py); the
    # security headers outermost, so that nothing the process answers (Flask, the streams,
    # the chat writes, Starlette's own 404, 405 and 500) leaves without them.
    return SecurityHeaders(wire.ChatWrites(app, flask_app, chat_writer, renderer, streams_served),
                           flask_app.config["TRUST_PROXY"])


def __getattr__(name):
    # `uvicorn app.asgi:app` builds the app on first access, not at import time.
    if name == "app":
        globals()["app"] = build()
        return globals()["app"]
    raise AttributeError(name)
