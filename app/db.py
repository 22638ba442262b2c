"""The one SQLite database: declared here, initialised by the factory, one connection per thread."""

import fcntl
import itertools
import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime
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


CHECKPOINT_SECONDS = 1.0


def checkpoint(path) -> tuple:
    """Copy what the WAL holds back into the database file, without waiting for anyone
    (PASSIVE); returns SQLite's (busy, WAL frames, frames copied)."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()


async def checkpoint_in_background(path, stop) -> None:
    """The web process's checkpointer (see init_app): every second until `stop`."""
    import anyio

    while not stop.is_set():
        with anyio.move_on_after(CHECKPOINT_SECONDS):
            await stop.wait()
        if not stop.is_set():
            await anyio.to_thread.run_sync(checkpoint, path)


def one_writer():
    """This process's writer lock, for writes that do not go through peewee (Huey's queue)."""
    return _writer


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


class _Finished:
    """A statement run to its end, its rows kept: what peewee and our code use of a cursor.

    A statement outside a transaction that still has rows to give keeps its connection in a
    read transaction, and a write on that connection meanwhile (an e-mail stored for each
    row of a member list, a delete per workspace) would have to upgrade it: see
    LumnarDatabase. Run to its end, the statement lets its read go at once."""

    __slots__ = ("description", "rowcount", "lastrowid", "_rows")

    def __init__(self, cursor):
        try:
            rows = cursor.fetchall()
            self.description = cursor.description
            self.rowcount = cursor.rowcount  # final only now, for a write with RETURNING
            self.lastrowid = cursor.lastrowid
        finally:
            cursor.close()
        self._rows = iter(rows)

    def fetchone(self):
        return next(self._rows, None)

    def fetchmany(self, size=1):
        return list(itertools.islice(self._rows, size))

    def fetchall(self):
        return list(self._rows)

    def __iter__(self):
        return self._rows

    def close(self):
        pass


class LumnarDatabase(SqliteDatabase):
    """Write transactions start with BEGIN IMMEDIATE, one at a time per process; a statement
    outside a transaction is run to its end before anything else runs on its connection.

    A connection that holds a read transaction and then writes must upgrade it, and SQLite
    refuses the upgrade at once ("database is locked", without waiting busy_timeout) when
    another connection holds the write lock or has committed since the read began: waiting
    could not help, the read's snapshot is already stale. Two ways into that: a deferred
    transaction that reads first (an FTS5 trigger reads its config before the insert lands),
    and a query still being iterated while the loop writes. The first takes the write lock
    at BEGIN instead, and waits its turn; the second cannot happen, because a statement
    outside a transaction never stays open (_Finished). An open statement would also pin
    its snapshot for as long as anything refers to its cursor: in the worker, a failed
    task's traceback kept one alive on the thread's kept connection, and every later write
    on that thread failed the same way."""

    def atomic(self, lock_type="IMMEDIATE"):
        return _OneWriter(super().atomic(lock_type))

    def execute_sql(self, sql, params=None, *args, **kwargs):
        if self.transaction_depth() > 0:
            return super().execute_sql(sql, params, *args, **kwargs)
        # A single write statement outside a transaction is a transaction of its own.
        if sql.lstrip()[:7].upper().startswith(_WRITES):
            with _writer:
                return _Finished(super().execute_sql(sql, params, *args, **kwargs))
        return _Finished(super().execute_sql(sql, params, *args, **kwargs))


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


# --- "this database is in use" ------------------------------------------------------------
# Every process that opens the database (web, worker, each flask command) holds a shared
# flock on <db>.in-use for as long as it lives; a restore takes it exclusively. So a restore
# cannot run under a live process, and a process starting during a restore waits for it to
# finish before it opens the file. The kernel drops the lock when a process dies (even by
# kill -9), so there is no stale pid file to clean up. A process has one database at a time
# (`database` is global), hence one lock.
IN_USE_SUFFIX = ".in-use"
_in_use = {"path": None, "fd": None}


class DatabaseInUse(RuntimeError):
    pass


def in_use_path(database_path) -> Path:
    return Path(f"{database_path}{IN_USE_SUFFIX}")


def hold_in_use(database_path) -> None:
    """Hold the shared lock for this process's database (releasing any previous one)."""
    path = str(in_use_path(database_path).resolve())
    if _in_use["path"] == path:
        return
    if _in_use["fd"] is not None:
        os.close(_in_use["fd"])
        _in_use.update(path=None, fd=None)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        # A folder that cannot hold this file cannot hold the database's WAL either: the
        # database is not usable, and /healthz says so.
        return
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a restore runs
    _in_use.update(path=path, fd=fd)


@contextmanager
def exclusive_use(database_path):
    """No other process has the database open while this block runs (DatabaseInUse if one
    has). This process's own shared lock is turned into the exclusive one and back."""
    path = str(in_use_path(database_path).resolve())
    own = _in_use["path"] == path
    fd = _in_use["fd"] if own else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUse(
                "Lumnar is running on this database (the web process, the worker or another "
                "flask command has it open): stop them first.") from None
        yield
    finally:
        if own:
            fcntl.flock(fd, fcntl.LOCK_SH)  # back to what every running process holds
        else:
            os.close(fd)


def init_app(app):
    pragmas = dict(PRAGMAS)
    if app.config.get("BACKGROUND_CHECKPOINTS"):
        # The web process: its connections stop checkpointing the WAL themselves (SQLite makes
        # the commit that fills 1,000 pages copy them back and sync the file, and a chat
        # message waited for it); asgi.py checkpoints every second in the background instead.
        # Other processes (the worker, the CLI) keep SQLite's automatic checkpoints.
        pragmas["wal_autocheckpoint"] = 0
    database.init(app.config["DATABASE"], pragmas=pragmas, check_same_thread=False)
    if app.config["DATABASE"] != ":memory:":
        hold_in_use(app.config["DATABASE"])

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


class Prepared:
    """A peewee select whose SQL is built once, then run again with other values.

    peewee builds a statement's SQL on every execution; on the chat's hot paths that cost
    more than SQLite running it (profiled: a third of a chat message's server time). The
    query is built on first use from `build(*markers)`, marker values standing for the
    arguments, and each marker's place among the parameters is found once. Rows come back
    as the query would give them (joined models included)."""

    MARK = -7_700_000_000  # no id, count or text of ours is this

    def __init__(self, build, arity: int = 1):
        self.build, self.arity = build, arity
        self._ready = None

    def _prepare(self):
        markers = [self.MARK - i for i in range(self.arity)]
        query = self.build(*markers)
        sql, params = query.sql()
        slots = []
        for value in params:
            found = [i for i, m in enumerate(markers) if value == m or value == str(m)]
            slots.append((True, found[0]) if found else (False, value))
        if sorted(i for is_arg, i in slots if is_arg) != list(range(self.arity)):
            raise ValueError("each argument must appear once in the prepared query")
        self._ready = (query, sql, slots)
        return self._ready

    def _cursor(self, args):
        query, sql, slots = self._ready or self._prepare()
        # Datetimes as peewee stores them (str gives the same text), not left to sqlite3's
        # default adapter, which newer Pythons deprecate.
        args = [str(a) if isinstance(a, datetime) else a for a in args]
        return query, database.execute_sql(sql, [args[v] if is_arg else v for is_arg, v in slots])

    def rows(self, *args):
        query, cursor = self._cursor(args)
        return query._get_cursor_wrapper(cursor)

    def first(self, *args):
        return next(iter(self.rows(*args)), None)

    def scalar(self, *args):
        row = self._cursor(args)[1].fetchone()
        return row[0] if row else None


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
