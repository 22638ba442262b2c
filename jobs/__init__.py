"""The Huey instance. Task modules import `huey` from here; `jobs.main` is the consumer's entry.

Huey starts in immediate (in-memory) mode so that importing this module connects to nothing;
`init_app` points it at the configured SQLite file unless the app asks for immediate mode.
"""

import contextlib

from huey import SqliteHuey
from huey.storage import SqliteStorage

from app.db import one_writer


class LumnarStorage(SqliteStorage):
    """Huey's queue on our database file, its writes taking turns with ours.

    A worker thread's writes (claiming a run, writing its log) and Huey's own (taking the next
    task) would otherwise meet in SQLite's busy handler, which sleeps and polls: measured, the
    consumer spent more time waiting there than running automations. In one process they now
    queue on the same writer lock as every other write (app.db)."""

    @contextlib.contextmanager
    def db(self, commit=False, close=False):
        if not commit:
            with super().db(commit, close) as cursor:
                yield cursor
            return
        with one_writer(), super().db(commit, close) as cursor:
            yield cursor


class LumnarHuey(SqliteHuey):
    storage_class = LumnarStorage


huey = LumnarHuey("lumnar", immediate=True, results=False, filename=":memory:")


def init_app(app):
    huey.storage_kwargs["filename"] = app.config["DATABASE"]
    huey.storage_kwargs["timeout"] = 5
    if app.config.get("HUEY_IMMEDIATE"):
        huey.immediate = True
    elif huey.immediate:
        huey.immediate = False  # builds the SqliteStorage on the database file
    app.extensions["huey"] = huey
    huey.flask_app = app


def queue_ok() -> bool:
    """True when the queue's storage answers (used by /healthz)."""
    try:
        huey.pending_count()
        return True
    except Exception:  # any storage failure means "not answering"
        return False
