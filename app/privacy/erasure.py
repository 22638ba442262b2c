"""Erasure down to the bytes: once something is deleted, nothing of it stays in the database's
files, so neither a copy of the file nor a backup made afterwards holds it (SQLite).

A DELETE alone leaves the deleted words in three places:
- the space the rows took: `PRAGMA secure_delete` (app/db.py) overwrites it with zeros;
- the search index: FTS5 keeps a deleted message's words in its segments, and writes them
  once more in the delete marker, until a merge into the oldest level drops both (FTS5's own
  secure-delete option needs SQLite 3.42). An "optimize" merge rewrites every segment into
  one that holds live messages only;
- the WAL: its frames are pages as they were, words included, until the file is overwritten
  or cut. A TRUNCATE checkpoint copies them back and cuts the file to nothing.

One gap is SQLite's own: a B-tree page rebuilt while rows move between pages keeps, in its
unused middle, whatever bytes were there, and secure_delete does not zero that. Measured on
SQLite 3.40.1: up to 5 of 12,000 deleted rows of a synthetic indexed table left a value
there; of 1,000 conversations deleted from a 100k-message chat database, none. Only VACUUM
clears it (0.9 s for 38 MB, 7.7 s for 394 MB, holding the write lock throughout, longer than
a web request waits for it), so it is not done here.

The work runs in the worker, never in a web request (jobs/privacy.py). Deletion paths call
`request_erasure()` once their transaction has committed; several deletions before a run
starts share that run. On PostgreSQL the search column goes with its row, and what dead rows
leave behind is the server's to reclaim (its VACUUM and WAL recycling): nothing to do here.
"""

import time
from collections.abc import Callable

from app import background
from app.db import Pace, database, is_postgres

TASK = "privacy.erase_traces"

# A negative page count makes FTS5's 'merge' an optimize done in steps (all segments merged
# as one level, at most this many pages a step), each its own short write transaction: one
# 'optimize' statement holds the write lock for the whole index (measured 0.22 s with 100k
# messages, 1.35 s with 1M, growing with the index), and a web request waits at most 5 s
# for the lock. Each run rewrites the whole index, since a deletion's marker is a segment of
# its own. A chat message that meets a step waits for all of it: steps of 200 pages held the
# lock up to 124 ms (100k messages), steps of 16 pages about 5 ms, for a few more steps.
OPTIMIZE_STEP_PAGES = 16
TRUNCATE_PATIENCE = 30.0  # seconds of trying to empty the WAL, then the task is retried
TRUNCATE_RETRY = 0.005


class TracesRemain(RuntimeError):
    """The WAL could not be emptied (a reader kept an older snapshot for the whole busy
    timeout): the task runs again later."""


def request_erasure() -> None:
    """After a deletion has committed: have the worker erase its traces soon. Cheap and safe
    to call for every deletion (one run covers every deletion committed before it starts)."""
    background.enqueue(TASK)


def erase_traces(merge_step: Callable[[int], int]) -> None:
    """Rewrite the search index without the deleted messages' words, then empty the WAL:
    what was deleted before the call is then neither in the index nor in the WAL (see the
    module's note for the one gap SQLite leaves). `merge_step(pages)` is the search index's
    merge (app/chat/service.py merge_search_index): 0 once there is nothing left to merge.
    The steps share the write lock with live chat as the retention purge does (Pace)."""
    if is_postgres():
        return
    Pace().until_done(lambda: merge_step(-OPTIMIZE_STEP_PAGES))
    if not empty_the_wal(TRUNCATE_PATIENCE):
        raise TracesRemain("the WAL still holds pages written before the erasure")


def empty_the_wal(patience: float) -> bool:
    """Copy the WAL back and cut it to nothing (a TRUNCATE checkpoint); whether it was done
    within `patience` seconds. A TRUNCATE checkpoint holds the write lock while it copies the
    frames back and then waits, still holding it, until no reader uses the WAL: with a busy
    timeout, chat messages would wait behind it for as long as the streams keep reading. So
    most of the WAL is copied first by a PASSIVE checkpoint, which lets writers on, and the
    TRUNCATE is tried without waiting (busy timeout 0: it gives up at once when a writer or a
    reader is there) until it finds a moment with neither."""
    database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
    (timeout,) = database.execute_sql("PRAGMA busy_timeout").fetchone()
    database.execute_sql("PRAGMA busy_timeout = 0")
    try:
        give_up = time.monotonic() + patience
        while True:
            (busy, _, _) = database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            if time.monotonic() >= give_up:
                return False
            time.sleep(TRUNCATE_RETRY)
    finally:
        database.execute_sql(f"PRAGMA busy_timeout = {int(timeout)}")
