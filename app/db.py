"""The database: declared here, chosen and initialised by the factory, one connection per thread.

The SQLite file by default; PostgreSQL when DATABASE_URL says so (several web processes and
workers on several machines). `database` is a peewee DatabaseProxy: models and queries name
it once, and the factory puts the configured engine behind it."""

import fcntl
import functools
import itertools
import mmap
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import anyio
import psycopg
from flask import request
from peewee import (
    SQL,
    AutoField,
    DatabaseProxy,
    Field,
    ForeignKeyField,
    Function,
    Model,
    Node,
    NodeList,
    OperationalError,
    PostgresqlDatabase,
    SqliteDatabase,
    fn,
)
from playhouse.postgres_ext import PooledPsycopg3Database
from psycopg import pq as psycopg_pq

# One writer at a time in this process. SQLite allows one writer per database anyway, and a
# writer that finds the lock taken waits in the busy handler, which sleeps and polls: with
# dozens of threads (web requests, streams, a worker's threads) wanting to write, most of
# them slept while the lock was free, and messages queued for seconds (measured by the chat
# benchmark). Threads queue here instead and wake as soon as the lock is released. Writers
# in other processes (the Huey consumer) still meet in SQLite's busy handler.
_writer = threading.RLock()
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


CHECKPOINT_SECONDS = 1.0


# SQLite writes the WAL from its start again only when a write begins after a checkpoint that
# copied every frame. Under steady chat a write always came in while the checkpoint was still
# copying, and the WAL grew for as long as the chat never paused (about 4 MB a second at
# 100 msg/s, sampled during the data-rights benchmark; the erasure's TRUNCATE then cut it
# holding the write lock, about 1 ms per MB). Past this many frames (16 MB of 4 kB pages) the
# checkpointer copies the last frames again with this process's writers held back.
RESTART_FRAMES = 4096


def checkpoint(path) -> tuple:
    """Copy what the WAL holds back into the database file, without waiting for anyone
    (PASSIVE); returns SQLite's (busy, WAL frames, frames copied). A long WAL gets a second
    pass while this process's writers wait (a few milliseconds: only what came in during the
    first), so that every frame is copied and the next write starts the WAL again."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        result = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if result[1] >= RESTART_FRAMES:
            with _writer:
                result = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return result
    finally:
        conn.close()


async def checkpoint_in_background(path, stop) -> None:
    """The web process's checkpointer (see init_app): every second until `stop`. PostgreSQL
    checkpoints by itself: nothing to do there."""
    if is_postgres():
        return
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

    def rollback(self):
        # SQLite ends a transaction itself when a write in it is interrupted (a Pace yielding to
        # the chat) or fails for want of space; a ROLLBACK then fails ("no transaction is
        # active") and would hide the error that ended it.
        if not self.is_closed() and not self.connection().in_transaction:
            return None
        return super().rollback()

    def execute_sql(self, sql, params=None, *args, **kwargs):
        if self.transaction_depth() > 0:
            if sql.startswith("ROLLBACK TO SAVEPOINT") and not self.connection().in_transaction:
                return None  # gone with the transaction SQLite ended (see rollback)
            return super().execute_sql(sql, params, *args, **kwargs)
        # A single write statement outside a transaction is a transaction of its own.
        if sql.lstrip()[:7].upper().startswith(_WRITES):
            with _writer:
                return _Finished(super().execute_sql(sql, params, *args, **kwargs))
        return _Finished(super().execute_sql(sql, params, *args, **kwargs))


class LumnarPostgres(PooledPsycopg3Database):
    """PostgreSQL (DATABASE_URL), through psycopg 3 and a pool of connections per process.

    Readers never block writers here and writers of different rows do not wait for each
    other, so there is no process-wide writer lock and no lock type for BEGIN (both are
    SQLite's answer to its one writer at a time)."""

    retired = False

    def atomic(self, lock_type=None):
        return super().atomic()

    def retire(self) -> None:
        """Replaced by another app's database in this process (tests build one per test):
        close the pool, and close rather than pool whatever a thread still running checks in
        later, so no connection is left for the garbage collector to drop unclosed."""
        self.retired = True
        self.close_all()

    def _can_reuse(self, conn):
        return not self.retired and super()._can_reuse(conn)

    def _is_closed(self, conn):
        # peewee asks the server (SELECT 1) at every checkout of an idle connection: a round
        # trip per request, and per chat writer batch (measured by the cluster benchmark).
        # A connection is handed out again only within STALE_SECONDS of its last use (older
        # ones are closed by the pool, see from_url); what psycopg knows is enough for those.
        if conn.closed or conn.broken:
            return True
        if conn.info.transaction_status != psycopg_pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except Exception:
                return True
        return False


STALE_SECONDS = 60  # a pooled connection idle longer is closed, not reused (a proxy or a
# server restart may have cut it meanwhile; see LumnarPostgres._is_closed)


def from_url(url: str, pool_size: int) -> LumnarPostgres:
    """The PostgreSQL database a postgresql:// URL names (libpq's own URL form: host, port,
    user, password, database name and options such as ?host=/socket/dir&sslmode=require)."""
    # peewee hands a postgresql:// "name" to psycopg as its conninfo, as it is.
    return LumnarPostgres(url, max_connections=pool_size, stale_timeout=STALE_SECONDS, timeout=10)


def is_postgres() -> bool:
    return isinstance(database.obj, PostgresqlDatabase)


def dialect() -> str:
    """'sqlite' or 'postgres': the key under which a model or a step keeps its dialect's form
    of what SQL cannot say the same way on both."""
    return "postgres" if is_postgres() else "sqlite"


def sql(text: str) -> str:
    """A hand-written statement in the engine's own placeholder style: written with `?` (as
    sqlite3 takes it), given with `%s` to psycopg. Statements here never hold a literal `?`."""
    return _with_percent_s(text) if is_postgres() else text


@functools.lru_cache(maxsize=256)
def _with_percent_s(text: str) -> str:
    return text.replace("?", "%s")


def epoch_seconds(field):
    """Whole seconds since 1970 of a (naive UTC) datetime column, in the engine's own words;
    a fraction of a second is cut on both (PostgreSQL's CAST alone would round it)."""
    if is_postgres():
        return fn.floor(fn.date_part("epoch", field)).cast("BIGINT")
    return fn.strftime("%s", field).cast("INTEGER")


class IdNeverReused(AutoField):
    """An id that is never given again after its row is deleted: streams, "seen" marks and
    links compare these ids. PostgreSQL's sequences never go back; SQLite reuses the highest
    deleted rowid unless the table is AUTOINCREMENT."""

    def ddl(self, ctx):
        nodes = super().ddl(ctx)
        return nodes if is_postgres() else NodeList((nodes, SQL("AUTOINCREMENT")))


class Engine(DatabaseProxy):
    """peewee's proxy, but a transaction is the engine's own: DatabaseProxy builds atomic()
    and transaction() itself over the proxy, which would bypass LumnarDatabase.atomic (BEGIN
    IMMEDIATE under the writer lock)."""

    def atomic(self, *args, **kwargs):
        return self.obj.atomic(*args, **kwargs)

    def transaction(self, *args, **kwargs):
        return self.obj.transaction(*args, **kwargs)

    def savepoint(self):
        return self.obj.savepoint()

    def manual_commit(self):
        return self.obj.manual_commit()


# Deferred: the engine is only known once the factory has read the configuration.
database = Engine()

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    # Huey's own lock timeout is 5 s; waiting as long keeps both sides patient alike.
    "busy_timeout": 5000,
    # With WAL, NORMAL loses nothing committed when the process crashes.
    "synchronous": "normal",
    "cache_size": -16000,
    # Deleted rows and freed pages are overwritten with zeros, not just marked free: what a
    # person deleted must not stay readable in the file or in a backup copied from it
    # (app/privacy/erasure.py does the rest). Said here because SQLite's default is off
    # unless the library was built with SQLITE_SECURE_DELETE, as Debian's happens to be.
    "secure_delete": "on",
    # A statement inside a longer transaction (a purge's cascade, a chat job's savepoint) keeps
    # the pages it changes as they were, to undo it alone; past 64 KiB SQLite spilled that to
    # a temporary file on disk: deleted rows written out once more (unlinked, but on the disk
    # until reused, beyond the erasure's reach) and disk writes made with the write lock held
    # (traced: a 100,000-message purge wrote about 700 MB there, more than to the WAL).
    "temp_store": "memory",
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
    previous = database.obj
    if isinstance(previous, LumnarPostgres):
        previous.retire()  # an app built again in this process (tests) keeps no stale pool
    if app.config.get("DATABASE_URL"):
        database.initialize(from_url(app.config["DATABASE_URL"], app.config["DATABASE_POOL_SIZE"]))
    else:
        pragmas = dict(PRAGMAS)
        if app.config.get("BACKGROUND_CHECKPOINTS"):
            # The web process: its connections stop checkpointing the WAL themselves (SQLite
            # makes the commit that fills 1,000 pages copy them back and sync the file, and a
            # chat message waited for it); asgi.py checkpoints every second in the background
            # instead. Other processes (the worker, the CLI) keep SQLite's automatic checkpoints.
            pragmas["wal_autocheckpoint"] = 0
        database.initialize(LumnarDatabase(app.config["DATABASE"], pragmas=pragmas,
                                           check_same_thread=False))
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
        if not app.config.get("DB_KEEP_OPEN", True) or is_postgres():
            database.close()  # on PostgreSQL: back to the pool (see thread_connection)


class Prepared:
    """A peewee select whose SQL is built once, then run again with other values.

    peewee builds a statement's SQL on every execution; on the chat's hot paths that cost
    more than SQLite running it (profiled: a third of a chat message's server time). The
    query is built on first use from `build(*markers)`, marker values standing for the
    arguments, and each marker's place among the parameters is found once.

    Rows come back as the query would give them, built here with peewee's public API only:
    each selected field's python_value, the models' own constructors, and their foreign keys
    to put joined models in place. peewee's cursor wrappers, which do this for a query it
    runs itself, are private (neither the query's method that makes them nor their classes
    are part of its API): free to change in any release, and this class would then break on the
    hot path of every chat message. What a row is made of is worked out once, with the SQL
    (and, being worked out once, costs less per call than peewee's wrappers, which work it
    out again on every execution):

    - a model select (`Site.select()`, `Conversation.select(Conversation, Visitor, Site)
      .join(Visitor)...`): an instance of the query's model; each joined model, built from
      the same row, is set on every foreign key of the row that holds its key
      (`conversation.visitor`, `conversation.site`, and `visitor.site` too), so reading it
      runs no query. Only whole models (every field selected): a model built from some of
      its fields would get the others' defaults, which its save() would then write.
    - a `.tuples()` select: a tuple, each field's value converted as peewee converts it
      (DateTimeField text -> datetime, BooleanField -> bool); a function of a field as
      peewee's default rule does (not COUNT, SUM, AVG, CAST; a converter given to a function
      with .python_value() is not seen: no public API shows it), other columns as given.

    Other shapes (dicts, named tuples, partial models) raise ValueError in rows() and
    first(); scalar() takes any query. Instances come out as Model(**values) would make
    them, so every field counts as changed: save() writes every field anyway, since no model
    of ours sets only_save_dirty (tests/test_prepared_statements.py checks that). That
    constructor also runs the model's defaults (utcnow, new keys) before the row's values
    replace them, so a row costs more than in peewee's wrapper and a call less: the chat's
    one-row lookups got faster, a call reading many joined rows slower (numbers in the commit
    that made this change)."""

    MARK = -7_700_000_000  # no id, count or text of ours is this

    def __init__(self, build, arity: int = 1):
        self.build, self.arity = build, arity
        self._ready = {}  # per dialect: the SQL is the engine's own (placeholders, quoting)

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
        ready = self._ready[dialect()] = (sql, slots, _row_maker(query))
        return ready

    def _cursor(self, args, rows: bool = False):
        sql, slots, make = self._ready.get(dialect()) or self._prepare()
        if rows and isinstance(make, str):
            raise ValueError(f"Prepared.rows(): {make}")
        # Datetimes as peewee stores them (str gives the same text), not left to sqlite3's
        # default adapter, which newer Pythons deprecate.
        args = [str(a) if isinstance(a, datetime) else a for a in args]
        return make, database.execute_sql(sql, [args[v] if is_arg else v for is_arg, v in slots])

    def rows(self, *args) -> list:
        make, cursor = self._cursor(args, rows=True)
        return [make(row) for row in cursor]

    def first(self, *args):
        make, cursor = self._cursor(args, rows=True)
        row = cursor.fetchone()
        return None if row is None else make(row)

    def scalar(self, *args):
        row = self._cursor(args)[1].fetchone()
        return row[0] if row else None


class _NullRow(SqliteDatabase):
    """A database that runs nothing asked of it: every statement answers one row of NULLs,
    as many as the query selects. peewee says what a query's rows are (models, tuples, dicts)
    only by giving them, through its public query.execute(); Prepared asks this one, once."""

    def __init__(self, width: int):
        super().__init__(":memory:")
        self.row = "SELECT " + ", ".join(["NULL"] * width)

    def execute_sql(self, sql, params=None, *args, **kwargs):
        return super().execute_sql(self.row)


def _converter(column):
    """What peewee does to this selected column's value (None: nothing)."""
    node = column.unwrap() if isinstance(column, Node) else column
    if isinstance(node, Field):
        return node.python_value
    if (isinstance(node, Function) and node.name
            and node.name.lower() not in Function.no_coerce_functions
            and node.arguments and isinstance(node.arguments[0], Node)):
        first = node.arguments[0].unwrap()
        if isinstance(first, Field):
            convert = first.python_value

            def lenient(value):  # as peewee does: a value the field cannot read stays as is
                try:
                    return convert(value)
                except (TypeError, ValueError):
                    return value

            return lenient
    return None


def _row_maker(query):
    """rows()' converter for `query`: row -> model instance or tuple, worked out once; or,
    for a shape rows() does not build, a string saying why."""
    columns = list(query.selected_columns)
    converters = [_converter(c) for c in columns]
    probe = _NullRow(len(columns))
    try:
        sample = next(iter(query.clone().execute(probe)), None)
    except Exception as exc:  # only the shape is asked: any failure means rows() cannot build
        return f"peewee could not read a row of this query ({exc!r})"
    finally:
        probe.close()
    if type(sample) is tuple:
        if not any(converters):
            return tuple
        return lambda row: tuple(
            [v if f is None else f(v) for f, v in zip(converters, row, strict=True)])
    model = getattr(query, "model", None)
    if not (isinstance(model, type) and issubclass(model, Model) and isinstance(sample, model)):
        return "rows come as model instances or, with .tuples(), as tuples; not as " + (
            type(sample).__name__)
    return _model_maker(model, columns, converters)


def _model_maker(primary, columns, converters):
    # Each column's model and the name it is set under (a field's, or the column's alias).
    places = {primary: {}}
    for i, column in enumerate(columns):
        node = column.unwrap()
        if isinstance(node, Field):
            model = node.model
            if not (isinstance(model, type) and issubclass(model, Model)):
                return f"{column} belongs to an aliased model"
        elif column.is_alias():
            model = primary
        else:
            return f"selected column {node!r} is neither a field nor aliased"
        places.setdefault(model, {})[column.name if column.is_alias() else node.name] = i
    fields = {model: model.select().selected_columns for model in places}
    for model, place in places.items():
        missing = {f.name for f in fields[model]} - set(place)
        if missing:
            return (f"{model.__name__} is not selected whole (missing {sorted(missing)}): "
                    "select whole models, or use .tuples()")
    # A joined model goes on each foreign key of the row that holds its key, checked row by
    # row (the row's own values say which join it came by; a NULL key attaches nothing).
    models = list(places)
    links, reached = [], {primary}
    for s, src in enumerate(models):
        for fk in fields[src]:
            dest = fk.rel_model if isinstance(fk, ForeignKeyField) else None
            if dest is None or dest is src or dest not in places:
                continue
            links.append((s, fk.name, models.index(dest), places[src][fk.name],
                          places[dest][fk.rel_field.name]))
    while True:
        more = {models[d] for s, _, d, _, _ in links if models[s] in reached} - reached
        if not more:
            break
        reached |= more
    if len(reached) < len(models):
        lost = sorted(m.__name__ for m in models if m not in reached)
        return f"no foreign key of the row leads to the joined {lost}"
    shapes = [(model, tuple(places[model].items())) for model in models]

    def make(row):
        values = [v if f is None else f(v) for f, v in zip(converters, row, strict=True)]
        built = [model(**{name: values[i] for name, i in place}) for model, place in shapes]
        for s, attr, d, at, key_at in links:
            key = values[key_at]
            if key is not None and values[at] == key:
                setattr(built[s], attr, built[d])
        return built[0]

    return make


def answers() -> bool:
    """Whether the database answers, asked on a fresh connection of its own: the kept
    connections could answer from their page cache after the SQLite file went bad, and a
    pool's from a server that has just gone away."""
    if is_postgres():
        try:
            with psycopg.connect(database.obj.database, connect_timeout=5) as probe:
                probe.execute("SELECT 1").fetchone()
            return True
        except psycopg.Error:
            return False
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
    kept, for the same reason requests keep theirs (schema and page cache stay warm). On
    PostgreSQL a kept connection would hold one of the pool's few for as long as the thread
    lives (dozens of threads): there it goes back to the pool after use, which costs little."""
    if is_postgres():
        with connection():
            yield database
        return
    database.connect(reuse_if_open=True)
    yield database


@contextmanager
def connection():
    """Open a connection for code outside a request (tasks, CLI), closing only what it opened.

    Tasks run inside a request in Huey's immediate mode; closing that request's connection
    underneath it would break the rest of the request.
    """
    # The database object itself, not the proxy: a connection goes back to the pool it came
    # from even if another app is initialised meanwhile (tests build one app per test while
    # an earlier test's worker thread may still be finishing).
    db = database.obj
    opened = db.is_closed()
    if opened:
        db.connect()
    try:
        yield database
    finally:
        if opened and not db.is_closed():
            db.close()


def utcnow() -> datetime:
    # Naive UTC everywhere in the database: SQLite has no time zones and comparisons stay simple.
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class WriteIntent:
    """A chat write on its way, told to the database's other processes: the time of the last
    one, in 8 bytes of a file beside the database that every process maps (a memory write to
    tell, a memory read to ask; nothing else in it). SQLite has one writer at a time; the
    worker's long deletions ask between two statements and commit at once when a chat write
    is coming, so the chat finds the lock free (see Pace)."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self.map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)

    def announce(self) -> None:
        self.map[0:8] = struct.pack("d", time.time())

    def last(self) -> float:
        return struct.unpack("d", self.map[0:8])[0]


_intents: dict[str, WriteIntent] = {}


def write_intent() -> WriteIntent | None:
    """This database's WriteIntent; None on PostgreSQL (its writers of different rows do not
    wait for each other) and for a database in memory."""
    engine = database.obj
    if engine is None or is_postgres() or engine.database == ":memory:":
        return None
    path = f"{engine.database}-intent"
    found = _intents.get(path)
    if found is None:
        found = _intents.setdefault(path, WriteIntent(path))
    return found


T = TypeVar("T")


class Pace:
    """How a long background deletion (a retention purge) shares SQLite's one write lock with
    live chat. Its rows go `chunk` at a time, one statement each, several statements to a
    transaction (the caller asks yield_now() between them, or runs each through execute(),
    which asks once the statement is built); the transaction is committed as soon as a chat
    write is announced (WriteIntent: the chat's routes announce one before they read the
    request), or after `longest` seconds. A chat write announced while a statement
    runs preempts it: SQLite stops the statement and undoes the whole transaction (a progress
    handler asks every PROGRESS_STEPS virtual-machine steps), and run() does it again later.
    After each transaction it rests `rest` times as long as it took (at least `min_rest`),
    then until no chat write was announced for `quiet` seconds (at most `patience`: a chat
    that never pauses still lets the purge on).

    Measured (tests/bench/bench_privacy.py, 100,000 messages while 100 chat messages a second
    flow): batches of a fixed 20 conversations held the lock 7 ms at the median, 31 ms at the
    99th percentile and 109 ms at worst, and chat delivery p99 went from 10 to 40 ms; sized by
    time alone (1-2 ms a transaction) the fixed cost of each commit made the purge 9 times
    slower and the holds' tail stayed (p99 8 ms). Yielding only between statements, a chat
    write still waited for the statement in progress and the commit: with 1,000,000 messages,
    one chat batch in ten waited (1-2 ms mostly, up to 22), and the purge's transactions that
    held the lock over 2 ms had a median of 4.5 ms (traced)."""

    def __init__(self, chunk: int = 20, longest: float = 0.02, rest: float = 1.0,
                 min_rest: float = 0.002, quiet: float = 0.005, patience: float = 0.5):
        self.chunk, self.longest, self.rest, self.min_rest = chunk, longest, rest, min_rest
        self.quiet, self.patience = quiet, patience
        self.intent = write_intent()
        self.transactions = 0
        self.preempted = 0  # transactions undone for a chat write
        self.held = 0.0  # seconds the transactions took, in all
        self.began = 0.0
        self.announced = 0.0
        self.committed = []  # what to do as soon as this transaction has committed
        self.statements = 0
        self.interrupted = False  # the last transaction was undone for a chat write
        self._stopping = False
        self._in_a_row = 0  # transactions undone one after the other

    @contextmanager
    def transaction(self):
        """One transaction of the deletion, then the rest. When a chat write preempts it, the
        `with` block ends early, undone, and `interrupted` says so (run() does it again)."""
        self.announced = self.intent.last() if self.intent else 0.0
        self.began = time.perf_counter()
        self.committed = []
        self.statements = 0  # run by execute() in this transaction
        self.interrupted = self._stopping = False
        # After a few in a row the same work goes on to its end (yielding between statements
        # only), so that a chat that never pauses cannot hold the deletion back for ever.
        preemptible = self.intent is not None and self._in_a_row < PREEMPTED_IN_A_ROW
        try:
            with database.atomic():
                connection = database.connection()
                if preemptible:
                    connection.set_progress_handler(self._chat_is_waiting, PROGRESS_STEPS)
                try:
                    yield self
                finally:
                    if preemptible:  # never inside the COMMIT
                        connection.set_progress_handler(None, 0)
        except (OperationalError, sqlite3.OperationalError) as exc:  # the latter from a cursor read
            if not (self._stopping and "interrupted" in str(exc)):
                raise
            self.interrupted = True
        took = time.perf_counter() - self.began
        if self.interrupted:
            self.preempted += 1
            self._in_a_row += 1
            _open_afresh()
        else:
            self._in_a_row = 0
            for action in self.committed:
                action()
            self.transactions += 1
        self.held += took
        time.sleep(max(self.min_rest, self.rest * took))
        if self.intent is not None:
            # Asleep until the quiet moment the last announcement allows, then asked again: a
            # poll every 2 ms woke the purge's thread 500 times a second just while the chat
            # was busy, competing with it for the CPU.
            give_up = time.monotonic() + self.patience
            while (wait := self.intent.last() + self.quiet - time.time()) > 0:
                left = give_up - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(wait, left))

    def _chat_announced(self) -> bool:
        """Whether a chat write was announced since this transaction began."""
        return self.intent is not None and self.intent.last() != self.announced

    def _chat_is_waiting(self) -> int:
        """SQLite's progress handler: non-zero stops the statement (the transaction is undone)."""
        self._stopping = self._chat_announced()
        return self._stopping

    def run(self, step: Callable[[], T]) -> T:
        """step() in one transaction; done again, after the rest, as often as a chat write
        preempts it. Its result. step() must change nothing outside the database (what it
        found is returned, and kept by the caller once run() returns), since an undone step
        is done again."""
        while True:
            with self.transaction():
                result = step()
            if not self.interrupted:
                return result

    def after_commit(self, action: Callable[[], None]) -> None:
        """action() once the current transaction has committed, before the rest (not at all if
        it is rolled back)."""
        self.committed.append(action)

    def until_done(self, step: Callable[[], int]) -> None:
        """step() again and again, each call a transaction of its own, until it answers 0
        (nothing left to do): a long job that only goes in steps of one statement (the
        search index's merges)."""
        while self.run(step):
            pass

    def yield_now(self) -> bool:
        """Whether to commit now: a chat write is coming, or the transaction is long enough."""
        return time.perf_counter() - self.began >= self.longest or self._chat_announced()

    def execute(self, query):
        """The query's cursor, or None when the transaction should commit first (yield_now).
        Built before asking: peewee takes longer to build a short statement than SQLite to
        run it, and a chat write announced meanwhile would otherwise stop the statement as
        soon as it started, undoing every statement before it (measured on the visitors'
        clean-up: 378 transactions undone for 171 committed)."""
        sql, params = query.sql()
        if self.statements and self.yield_now():
            return None
        # The first always runs (a chat write announced by then stops it at once, with nothing
        # to undo): so a chat that never pauses still cannot hold the deletion back for ever.
        self.statements += 1
        return database.execute_sql(sql, params)


def _open_afresh() -> None:
    """This thread's connection closed and opened again, as patient as it was. Right after a
    transaction SQLite undid for an interrupted statement, the next BEGIN sometimes failed at
    once with "database is locked" (5 purges in 17 under the quick benchmark stopped so). The
    likeliest cause: a statement run inside SQLite for the undone one (the search index's
    own) stays active and keeps the connection in a read transaction, stale by then, and
    SQLite refuses such a connection the write lock without waiting (see LumnarDatabase). A
    fresh connection has none; opening one costs about a millisecond."""
    (patience,) = database.execute_sql("PRAGMA busy_timeout").fetchone()
    database.close()
    database.connect()
    database.execute_sql(f"PRAGMA busy_timeout = {int(patience)}")


# Pace: SQLite calls the progress handler every this many virtual-machine steps of a statement;
# each call reads the write intent, well under a microsecond. Measured with 1,000,000 messages
# under chat load (tests/bench/bench_privacy.py, traced): chat batches that found the lock
# taken during the purge, 2,224 with no preemption, 1,916 asked every 1,000 steps, 909 every
# 100 (their waits 4.2, 3.2 and 1.9 s in all), for a purge CPU time of 56, 60 and 62 s.
PROGRESS_STEPS = 100
PREEMPTED_IN_A_ROW = 3


def delete_in_batches(model, where, batch: int = 300, before=None) -> int:
    """Delete the rows `where` selects, `batch` at a time, each batch its own short
    transaction (so that chat keeps answering and no transaction outlives the worker's lock);
    `before(ids)` first deletes what must go with each batch. Returns how many went."""
    deleted = 0
    while True:
        ids = [r.id for r in model.select(model.id).where(where).limit(batch)]
        if not ids:
            return deleted
        with database.atomic():
            if before is not None:
                before(ids)
            deleted += model.delete().where(model.id.in_(ids)).execute()
