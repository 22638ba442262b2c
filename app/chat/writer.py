"""The chat's one writer: every chat write of this process runs on the event loop, and the
writes that queue up together are committed together (group commit).

Why: a message is a handful of statements that SQLite runs in a fraction of a millisecond,
but one transaction per message, each in a thread of a pool, cost a lock hand-over, a commit
and two thread wake-ups per message, and under load the threads queued for the lock in
convoys (measured by the chat benchmark). A writer thread of its own was better but still
paid two thread hand-offs and a fight for the interpreter lock per batch (measured: an empty
job cost 229 µs of CPU and 563 µs of wall time when sent one at a time). So the writes run
where their requests are, on the loop: the route hands its whole write (rules included, see
app/chat/wire.py) here and waits; the jobs that arrived meanwhile are run one after another,
each in a savepoint of one transaction (one job's refusal or failure undoes only its own
writes), committed once; the batch's events are rendered once per audience from the
objects the writes made (live.Hub.prepare) and handed to the streams, then every job is
answered.

The loop must never wait for a lock: the batch starts only when this process's writer lock
(app.db.one_writer) is free and SQLite grants the write lock at once (busy timeout 0 for the
BEGIN); when another thread or process holds it, the writer tries again a millisecond or two
later, and the loop serves everyone else meanwhile. Inside the transaction nothing waits
(WAL: the write lock is held, readers never block it). What a write must do only once it is
committed (queue an e-mail, tell automations: both may wait on locks) is collected
(app.chat.live.after_commit) and run in a worker thread after the commit, before the
answers; if the commit fails, none of it happens and every job of the batch is answered
with the error (its client retries with the same client id: exactly once still holds).
"""

import asyncio
import logging

import anyio
from peewee import OperationalError

from app.chat import events, live
from app.db import PRAGMAS, database, dialect, one_writer, thread_connection

log = logging.getLogger(__name__)

BATCH_LIMIT = 256  # jobs in one transaction at most: a long transaction delays other processes
# A write lock held elsewhere is asked for again this soon: the worker's long deletions give
# it up as soon as they see the chat's announcement (app.db.Pace undoes a transaction in
# progress), so a chat write that found it taken gets it within about that; asking costs a
# failed BEGIN, a few microseconds.
RETRY_SECONDS = 0.0005
BUSY_TIMEOUT = PRAGMAS["busy_timeout"]  # what the connection goes back to after a batch
# The batch's BEGIN must not wait for a lock held elsewhere (then the loop would): on SQLite,
# a busy timeout of 0 for it. PostgreSQL's BEGIN takes no lock at all, and its writers of
# different rows do not wait for each other.
NO_WAITING = {"sqlite": ("PRAGMA busy_timeout = 0", f"PRAGMA busy_timeout = {BUSY_TIMEOUT}"),
              "postgres": (None, None)}
# Where a batch runs. SQLite's statements are calls into this process, a few microseconds
# each: on the loop, a thread hop would cost more than the batch. PostgreSQL's are network
# round trips (a dozen per message): on the loop they kept it waiting most of the time
# (measured by tests/bench/bench_chat_cluster.py: one process fell behind at 100-150 msg/s
# with most of its loop's time inside psycopg), so there the batch runs in a worker thread
# and the loop serves everyone else meanwhile; one hop per batch, not per message.
OFF_THE_LOOP = {"sqlite": False, "postgres": True}


class Job:
    __slots__ = ("fn", "args", "future", "result", "error")

    def __init__(self, fn, args, future):
        self.fn, self.args, self.future = fn, args, future
        self.result = self.error = None


class Writer:
    def __init__(self, flask_app, hub=None):
        self.app = flask_app
        self.hub = hub
        self.queue = []  # jobs waiting for the next batch
        self.running = None  # the task that runs batches while jobs wait
        self.batches = 0  # batches committed, and the jobs they held (the tests' and bench's view)
        self.written = 0
        self.waits = 0  # times the write lock was held elsewhere and the batch waited

    async def run(self, fn, *args):
        """fn(*args) run in this writer's batch transaction; its result, or its exception."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append(Job(fn, args, future))
        if self.running is None or self.running.done():
            self.running = loop.create_task(self._batches(), name="chat-writer")
        return await future

    def later(self, fn, *args) -> None:
        """fn(*args) in a coming batch, nobody waiting for it (a session's "seen" time).
        Called from a job (on the loop, or in the batch's thread: a list append is atomic,
        and the queue is swapped only between batches)."""
        self.queue.append(Job(fn, args, None))

    async def _batches(self) -> None:
        # Let the requests that are ready on this round of the loop queue their jobs first:
        # they then share one commit.
        await asyncio.sleep(0)
        while self.queue:
            batch, self.queue = self.queue[:BATCH_LIMIT], self.queue[BATCH_LIMIT:]
            try:
                off_the_loop = OFF_THE_LOOP[dialect()]
                while True:
                    outcome = (await anyio.to_thread.run_sync(self._batch, batch) if off_the_loop
                               else self._batch(batch))
                    if outcome is not None:
                        break
                    self.waits += 1
                    await asyncio.sleep(RETRY_SECONDS)
                ready, actions = outcome
                if actions:
                    # After the commit, before the answers: when a sender hears "stored", what
                    # the write queued (an e-mail, an automation's run) is queued too.
                    await anyio.to_thread.run_sync(_run_all, self.app, actions)
            except BaseException as exc:  # never leave a request waiting
                if not isinstance(exc, Exception):
                    _fail(batch, asyncio.CancelledError())
                    raise
                log.exception("chat writer: batch failed")
                _fail(batch, exc)
                ready = []
            if ready and self.hub is not None:
                self.hub.accept(ready)  # in its stream before its sender's answer
            _settle(batch)

    def _batch(self, batch: list):
        """Run `batch` in one transaction: (events, after-commit actions), or None when the
        write lock is held elsewhere (nothing was run)."""
        writer = one_writer()
        if not writer.acquire(blocking=False):
            return None
        collected = live.Collector()
        try:
            with self.app.app_context(), thread_connection():
                connection = database.connection()
                impatient, patient = NO_WAITING[dialect()]
                if impatient:
                    connection.execute(impatient)
                try:
                    transaction = database.atomic()
                    try:
                        transaction.__enter__()  # BEGIN IMMEDIATE: granted at once, or not
                    except OperationalError as exc:
                        if "locked" in str(exc) or "busy" in str(exc):
                            return None  # held by another process: asked again shortly
                        raise
                    try:
                        with live.collecting(collected):
                            self._jobs(batch, collected, connection)
                        # Last, so the workspaces' counter rows are held for the least time.
                        events.record(collected.written, tell=False)
                    except BaseException as exc:
                        transaction.__exit__(type(exc), exc, exc.__traceback__)
                        raise
                    try:
                        transaction.__exit__(None, None, None)  # COMMIT
                    except Exception as exc:
                        log.exception("chat writer: batch of %d not committed", len(batch))
                        _fail(batch, exc)
                        return [], []
                finally:
                    if patient:
                        connection.execute(patient)
                self.batches += 1
                self.written += len(batch)
                if self.hub is None or not collected.written:
                    return [], collected.after
                ready = self.hub.prepare(collected.written)
                self.hub.announce(collected.written)  # other processes: over Redis, if any
                return ready, collected.after
        finally:
            writer.release()

    @staticmethod
    def _jobs(batch: list, collected, connection) -> None:
        for job in batch:
            mark = len(collected.written), len(collected.after)
            # A savepoint per job: a failure undoes only its own writes. Plain SQL on the
            # connection, not a nested atomic(): peewee's cost three times SQLite's.
            connection.execute("SAVEPOINT chat_job")
            try:
                job.result = job.fn(*job.args)
            except Exception as exc:
                job.error = exc
                connection.execute("ROLLBACK TO chat_job")
                # What the failed job had collected is not committed: drop it.
                del collected.written[mark[0]:]
                del collected.after[mark[1]:]
            connection.execute("RELEASE chat_job")


def _run_all(flask_app, actions) -> None:
    with flask_app.app_context(), thread_connection():
        for action in actions:
            try:
                action()
            except Exception:
                log.exception("chat writer: an after-commit action failed")


def _fail(batch, exc) -> None:
    for job in batch:
        if job.error is None:
            job.error, job.result = exc, None


def _settle(batch) -> None:
    for job in batch:
        if job.future is None:
            if job.error is not None:
                log.error("chat writer: a background write failed: %r", job.error)
        elif not job.future.done():  # done: the request went away
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)
