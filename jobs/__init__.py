"""The Huey instance and its tasks. Task modules import `huey` from here and name themselves to
the services' seam (app.background); `jobs.main` is the consumer's entry.

Huey starts in immediate (in-memory) mode so that importing this module connects to nothing;
`init_app` points it at the configured SQLite file unless the app asks for immediate mode.
"""

import contextlib
import functools
import logging
import random
import sqlite3

import peewee
from huey import SqliteHuey
from huey.exceptions import RetryTask
from huey.storage import RedisStorage, SqliteStorage

from app import background
from app.db import one_writer

logger = logging.getLogger(__name__)

# How long the worker's connections wait for the write lock (SQLite's busy timeout). Nobody
# waits for a task the way a visitor waits for a request, so the worker is more patient than
# the web process (5 s): a burst of chat writes, or a search-index merge step, is waited out
# instead of failing the task.
WORKER_BUSY_SECONDS = 30
# A task that still found the database locked runs again after this many seconds (jittered,
# so that tasks that met the same lock do not meet again).
LOCKED_RETRY_SECONDS = (1.0, 5.0)


def met_a_lock(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's "database is locked" (from peewee or from Huey's queue)."""
    return isinstance(exc, peewee.OperationalError | sqlite3.OperationalError) and (
        "locked" in str(exc))


def retried_when_locked(func):
    """`func` as a task body that goes back in the queue, instead of failing, when the database
    stayed locked: a task is retried, never dropped, for as long as it takes. Huey's RetryTask
    does not count against the task's own retries (kept for its own failures, such as SMTP)."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (peewee.OperationalError, sqlite3.OperationalError) as exc:
            if not met_a_lock(exc):
                raise
            delay = random.uniform(*LOCKED_RETRY_SECONDS)
            logger.warning("%s.%s found the database busy for too long; it runs again in %.1f s",
                           func.__module__, func.__name__, delay)
            raise RetryTask(delay=delay) from None

    return run


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
    """Every task, periodic ones included, is retried when it meets a locked database (see
    retried_when_locked): no task has to remember it."""

    storage_class = LumnarStorage

    def task(self, *args, **kwargs):
        decorate = super().task(*args, **kwargs)
        return lambda func: decorate(retried_when_locked(func))

    def periodic_task(self, *args, **kwargs):
        decorate = super().periodic_task(*args, **kwargs)
        return lambda func: decorate(retried_when_locked(func))

    def enqueue_many(self, task, arg_tuples: list[tuple]) -> None:
        """`task` once per tuple: on the SQLite queue in one transaction instead of one each
        (each of which waits for its own disk sync), as a tick or a chat event with several
        automations needs."""
        if len(arg_tuples) > 1 and not self.immediate and isinstance(self.storage, SqliteStorage):
            rows = [(self.storage.name, self.storage.to_blob(self.serialize_task(task.s(*args))), 0)
                    for args in arg_tuples]
            with self.storage.db(commit=True) as cursor:
                cursor.executemany("INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)", rows)
        else:
            for args in arg_tuples:
                task(*args)

    def answers(self) -> bool:
        """True when the queue's storage answers (the health check)."""
        try:
            self.pending_count()
            return True
        except Exception:  # any storage failure means "not answering"
            return False


huey = LumnarHuey("lumnar", immediate=True, results=False, filename=":memory:")


@huey.on_startup()
def _patient_queue():
    """In the consumer only (each worker thread runs this as it starts): its queue connection,
    which every worker thread shares, waits for the write lock as long as its tasks do."""
    if isinstance(huey.storage, SqliteStorage):  # Redis has no lock to wait for
        with huey.storage.db() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {WORKER_BUSY_SECONDS * 1000}")


def init_app(app):
    """The queue the app's tasks go to: Redis when REDIS_URL is set (several machines share
    it), else the database file's SQLite queue; in memory when the app asks for immediate mode
    (tasks run at once: the unit tests)."""
    if app.config.get("REDIS_URL"):
        huey.storage_class, huey.storage_kwargs = RedisStorage, {"url": app.config["REDIS_URL"]}
    else:
        huey.storage_class = LumnarStorage
        huey.storage_kwargs = {"filename": app.config["DATABASE"], "timeout": 5}
    if app.config.get("HUEY_IMMEDIATE"):
        huey.immediate = True
    else:
        huey.immediate = False
        huey.storage = huey.create_storage()  # the configured one, whatever came before
    app.extensions["huey"] = huey
    huey.flask_app = app
    background.install(huey)


# Every task module, so that every task the services may name is known in the web process as
# in the consumer. Last: they import `huey` from here.
from jobs import (  # noqa: E402, F401
    accounts,
    automations,
    backups,
    billing,
    chat,
    contact,
    deletion,
    insight,
    mail,
    policies,
    privacy,
    retention,
)
