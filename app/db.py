"""The one SQLite database: declared here, initialised by the factory, one connection per thread."""

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from flask import request
from peewee import SqliteDatabase

# One writer at a time in this process. SQLite allows one writer per database anyway, and a
# writer that finds the lock taken waits in the busy handler, which sleeps and polls: with
# dozens of threads (web requests, streams, a worker's threads) wanting to write, most of
# them slept while the lock was free, and messages queued for seconds (measured by the chat
# benchmark). Threads queue here instead and wake as soon as the lock is released. Writers
# in other processes (the Huey consumer) still meet in SQLite's busy handler.
_writer = threading.RLock()
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _OneWriter:
    """Holds the process's writer lock around a transaction (savepoints re-enter it)."""

    def __init__(self, transaction):
        self.transaction = transaction

    def __enter__(self):
        _writer.acquire()
        try:
            return self.transaction.__enter__()
        except BaseException:
            _writer.release()
            raise

    def __exit__(self, *exc):
        try:
            return self.transaction.__exit__(*exc)
        finally:
            _writer.release()


class LumnarDatabase(SqliteDatabase):
    """Write transactions start with BEGIN IMMEDIATE, one at a time per process.

    A deferred transaction that reads first and writes later (an FTS5 trigger reads its
    config before the insert lands) cannot upgrade to a writer once another connection has
    committed: SQLite answers "database is locked" at once, without waiting busy_timeout.
    Taking the write lock at BEGIN makes it wait its turn instead."""

    def atomic(self, lock_type="IMMEDIATE"):
        return _OneWriter(super().atomic(lock_type))

    def execute_sql(self, sql, params=None, *args, **kwargs):
        # A single write statement outside a transaction is a transaction of its own.
        if self.transaction_depth() == 0 and sql.lstrip()[:7].upper().startswith(_WRITES):
            with _writer:
                return super().execute_sql(sql, params, *args, **kwargs)
        return super().execute_sql(sql, params, *args, **kwargs)


# Deferred: the path is only known once the factory has read the configuration.
database = LumnarDatabase(None)

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    # Huey's own lock timeout is 5 s; waiting as long keeps both sides patient alike.
    "busy_timeout": 5000,
    # With WAL, NORMAL loses nothing committed when the process crashes.
    "synchronous": "normal",
    "cache_size": -16000,
}


def init_app(app):
    database.init(app.config["DATABASE"], pragmas=PRAGMAS, check_same_thread=False)

    @app.before_request
    def _open():
        # The health check opens the database itself, inside its own error handling: opening
        # it here would turn a broken database into a 500 before the check could report 503.
        if request.endpoint == "public.healthz":
            return
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _release(exc):
        # The connection stays open for the thread's next request: a fresh one re-reads the
        # schema and starts with a cold page cache, which cost more than the queries of a
        # chat message. Only a transaction left open by an error is undone.
        if database.is_closed():
            return
        if database.in_transaction():
            database.rollback()
        if not app.config.get("DB_KEEP_OPEN", True):
            database.close()


def answers() -> bool:
    """Whether the database file can be opened and read, asked on a fresh connection of its
    own: the threads' kept connections could answer from their page cache after the file
    went bad."""
    try:
        uri = Path(database.database).resolve().as_uri() + "?mode=ro"
        probe = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
        return True
    except sqlite3.Error:
        return False


@contextmanager
def thread_connection():
    """For the streams' long-lived worker threads: the thread's connection, opened once and
    kept, for the same reason requests keep theirs (schema and page cache stay warm)."""
    database.connect(reuse_if_open=True)
    yield database


@contextmanager
def connection():
    """Open a connection for code outside a request (tasks, CLI), closing only what it opened.

    Tasks run inside a request in Huey's immediate mode; closing that request's connection
    underneath it would break the rest of the request.
    """
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield database
    finally:
        if opened and not database.is_closed():
            database.close()
