"""The chat's one writer: a thread owning one connection that runs every chat write of this
process, committing what has queued up together (group commit).

Why: a message is a handful of statements that SQLite runs in a fraction of a millisecond,
but one transaction per message, each in a thread of a pool, cost a lock hand-over, a commit
and two thread wake-ups per message, and under load the threads queued for the lock in
convoys (measured by the chat benchmark). Here the route hands its whole write (rules
included, see app/chat/wire.py) to this thread and waits; the thread takes every job that
is waiting, runs each in a savepoint of one transaction (one job's refusal or failure undoes
only its own writes), commits once, renders the batch's events once per audience from the
objects the writes made (live.Hub.prepare) and hands results and events to the event loop
in one call.

Inside a batch, what a write must do only once it is committed (hand the event to the
streams, queue an e-mail, tell automations) is collected (app.chat.live.deferred and
after_commit) and done after the commit; if the commit fails, none of it happens and every
job of the batch is answered with the error (its client retries with the same client id:
exactly once still holds).
"""

import asyncio
import logging
import queue
import threading

from app.chat import live
from app.db import database, thread_connection

log = logging.getLogger(__name__)

BATCH_LIMIT = 256  # jobs in one transaction at most: a long transaction delays other processes
IDLE_EXIT = 30.0  # seconds: a writer started on demand (no lifespan, as in tests) then ends


class Job:
    __slots__ = ("fn", "args", "future", "result", "error")

    def __init__(self, fn, args, future):
        self.fn, self.args, self.future = fn, args, future
        self.result = self.error = None


class Writer:
    def __init__(self, flask_app, hub=None):
        self.app = flask_app
        self.hub = hub
        self.jobs = queue.SimpleQueue()
        self.thread = None
        self.lock = threading.Lock()
        self.kept = False  # started by the app's lifespan: runs until stop()
        self.batches = 0  # batches committed, and the jobs they held (the tests' and bench's view)
        self.written = 0

    # -- the loop's side --------------------------------------------------------------------
    def start(self) -> None:
        """Run until stop() (the web process's lifespan)."""
        self.kept = True
        self._ensure()

    def stop(self) -> None:
        self.kept = False
        thread = self.thread
        if thread is not None:
            self.jobs.put(None)
            thread.join(timeout=10)

    async def run(self, fn, *args):
        """fn(*args) run in this writer's batch transaction; its result, or its exception."""
        future = asyncio.get_running_loop().create_future()
        self.jobs.put(Job(fn, args, future))
        self._ensure()
        return await future

    def later(self, fn, *args) -> None:
        """fn(*args) in a coming batch, nobody waiting for it (a session's "seen" time)."""
        self.jobs.put(Job(fn, args, None))
        self._ensure()

    def _ensure(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            with self.lock:
                if self.thread is None or not self.thread.is_alive():
                    self.thread = threading.Thread(target=self._loop, name="chat-writer",
                                                   daemon=True)
                    self.thread.start()

    # -- the writer thread ------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                first = self.jobs.get(timeout=None if self.kept else IDLE_EXIT)
            except queue.Empty:
                with self.lock:
                    if self.jobs.empty():
                        self.thread = None
                        return
                continue
            if first is None:
                if self.kept:
                    continue  # a stop() from an earlier lifespan; this one goes on
                return
            batch = [first]
            while len(batch) < BATCH_LIMIT:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)  # handled once this batch is done
                    break
                batch.append(job)
            try:
                self._batch(batch)
            except BaseException as exc:  # never leave a route waiting
                log.exception("chat writer batch failed")
                for job in batch:
                    if job.error is None:
                        job.error, job.result = exc, None
                self._answer(batch, [])

    def _batch(self, batch: list) -> None:
        collected = live.Collector()
        with self.app.app_context(), thread_connection():
            try:
                with live.collecting(collected), database.atomic():
                    for job in batch:
                        mark = len(collected.written), len(collected.after)
                        # A savepoint per job: a failure undoes only its own writes. Plain
                        # SQL, not a nested atomic(): peewee's cost three times SQLite's.
                        database.execute_sql("SAVEPOINT chat_job")
                        try:
                            job.result = job.fn(*job.args)
                        except Exception as exc:
                            job.error = exc
                            database.execute_sql("ROLLBACK TO chat_job")
                            # What the failed job had collected is not committed: drop it.
                            del collected.written[mark[0]:]
                            del collected.after[mark[1]:]
                        database.execute_sql("RELEASE chat_job")
            except Exception as exc:
                # The commit (or BEGIN) failed: nothing of the batch is stored.
                log.exception("chat writer: batch of %d not committed", len(batch))
                for job in batch:
                    if job.error is None:
                        job.error, job.result = exc, None
                self._answer(batch, [])
                return
            self.batches += 1
            self.written += len(batch)
            events = self.hub.prepare(collected.written) if (
                self.hub is not None and collected.written) else []
            # Before the answers: when a sender hears "stored", what the write queued (an
            # e-mail, an automation's run) is queued too.
            for action in collected.after:
                try:
                    action()
                except Exception:
                    log.exception("chat writer: an after-commit action failed")
            self._answer(batch, events)

    def _answer(self, batch: list, events: list) -> None:
        """One call per event loop: resolve its jobs' futures, deliver the batch's events."""
        by_loop = {}
        for job in batch:
            if job.future is None:
                if job.error is not None:
                    log.error("chat writer: a background write failed: %r", job.error)
                continue
            by_loop.setdefault(job.future.get_loop(), []).append(job)
        hub_loop = self.hub.loop if self.hub is not None and events else None
        if hub_loop is not None and hub_loop not in by_loop:
            by_loop[hub_loop] = []
        for loop, jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, jobs, events if loop is hub_loop else None,
                                          self.hub)
            except RuntimeError:
                pass  # that loop has closed: nobody waits there any more


def _settle(jobs, events, hub) -> None:
    """On the event loop: the batch's events to the streams first (a message is in its stream
    before its sender's answer arrives), then each job's answer."""
    if events:
        hub.accept(events)
    for job in jobs:
        if job.future.done():
            continue  # the request went away (client disconnected)
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
