"""The Huey instance. Task modules import `huey` from here; `jobs.main` is the consumer's entry.

Huey starts in immediate (in-memory) mode so that importing this module connects to nothing;
`init_app` points it at the configured SQLite file unless the app asks for immediate mode.
"""

from huey import SqliteHuey

huey = SqliteHuey("lumnar", immediate=True, results=False, filename=":memory:")


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
