"""The bare stack, for floors: Flask behind a2wsgi under uvicorn, no Lumnar code.

GET /healthz: hello world. POST /insert: one SQLite insert and commit of the posted `body`
into a throw-away table (same pragmas as the app: WAL, synchronous NORMAL); POST
/insert-asgi: the same insert from a Starlette endpoint (a thread for the write). GET /sse/idle:
an sse-starlette stream that sends nothing, forever (the cost of an idle stream).
"""

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import anyio
from a2wsgi import WSGIMiddleware
from flask import Flask, request
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

flask_app = Flask(__name__)
DB_PATH = Path(os.environ.get("LUMNAR_DATA_DIR", ".")) / "floor.db"
_local = threading.local()


def _db() -> sqlite3.Connection:
    db = getattr(_local, "db", None)
    if db is None:
        db = sqlite3.connect(DB_PATH, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=wal")
        db.execute("PRAGMA synchronous=normal")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("CREATE TABLE IF NOT EXISTS floor_insert (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "body TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        _local.db = db
    return db


@flask_app.get("/healthz")
def hello():
    return "hello"


@flask_app.post("/insert")
def insert():
    db = _db()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO floor_insert (body) VALUES (?)", (request.form.get("body", ""),))
    db.execute("COMMIT")
    return "ok"


async def insert_asgi(request):
    """The same insert served by Starlette itself (no a2wsgi, no Flask): how much a hot write
    could gain by leaving the Flask path."""
    form = await request.form()
    body = form.get("body", "")

    def write():
        db = _db()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO floor_insert (body) VALUES (?)", (body,))
        db.execute("COMMIT")

    await anyio.to_thread.run_sync(write)
    return PlainTextResponse("ok")


async def idle_stream(request):
    async def nothing():
        await asyncio.Event().wait()
        yield {}  # never reached

    return EventSourceResponse(nothing(), ping=15, send_timeout=10,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


app = Starlette(routes=[Route("/sse/idle", idle_stream), Route("/insert-asgi", insert_asgi, methods=["POST"]),
                        Mount("/", WSGIMiddleware(flask_app))])
