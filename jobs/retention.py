"""Retention tasks: the purges driven by the retention table (app/privacy/restriction/retention.py)."""

from huey import crontab

from app.privacy import erasure
from app.privacy.restriction import retention
from jobs import huey
from jobs.context import task_context


# The rows this table owns; the chat, run-log, billing and usage purges keep their own
# nightly tasks (each row names the task that runs it).
@huey.periodic_task(crontab(hour="4", minute="7"))
def run_retention():
    with task_context():
        if any(retention.run().values()):
            erasure.request_erasure()
