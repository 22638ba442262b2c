"""Data-rights tasks: build an export, purge the expired ones, erase what deletions left in the
database's files."""

import time

from huey import crontab

from app import background
from app.chat import service as chat
from app.privacy import erasure
from app.privacy.export import service as export
from jobs import huey
from jobs.context import task_context


# No retries: a failed export is marked failed (the person is told, and may ask again).
@background.task("privacy.export")
@huey.task()
def build_export(export_id: int):
    with task_context():
        export.build(export_id)


@huey.periodic_task(crontab(minute="23"))
def purge_exports():
    with task_context():
        export.purge_expired()


# Set, to the time it was set, while an erasure run is queued and has not started: a deletion
# meanwhile needs no run of its own, since the queued one starts after it committed.
ERASURE_QUEUED = "privacy.erasure-queued"
# A flag this old belongs to a run that was lost (a worker stopped between taking the task and
# starting it): the next deletion queues a run instead of waiting for it for ever.
ERASURE_QUEUED_STALE_SECONDS = 3600


# Retried: the WAL may stay busy for a while (a long backup read), and the run must happen.
@huey.task(retries=10, retry_delay=60)
def erase_deleted_traces():
    huey.get(ERASURE_QUEUED)  # first: a deletion committed from now on queues a run of its own
    with task_context():
        # The chat's search index is rewritten by the chat's own merge step (passed in, so
        # that the chat, which asks for erasures, and erasure need not import each other).
        erasure.erase_traces(chat.merge_search_index)


def _first_to_queue(now: float) -> bool:
    """Whether this deletion must queue a run: none is queued, or the queued one was lost."""
    if huey.put_if_empty(ERASURE_QUEUED, now):
        return True
    queued_at = huey.get(ERASURE_QUEUED, peek=True)
    # None: the queued run took the flag since, so it started after this deletion.
    if queued_at is None or now - queued_at < ERASURE_QUEUED_STALE_SECONDS:
        return False
    huey.put(ERASURE_QUEUED, now)
    return True


@background.task(erasure.TASK)
def queue_erasure():
    """Runs in the deleting process, not in the worker: queues `erase_deleted_traces` unless
    one is queued already (many deletions, one run). A plain function behind the task's name,
    so the check happens before anything is queued; asked for without a delay."""
    if not _first_to_queue(time.time()):
        return
    try:
        erase_deleted_traces()
    except BaseException:
        huey.get(ERASURE_QUEUED)  # nothing was queued: the next deletion must queue a run
        raise
