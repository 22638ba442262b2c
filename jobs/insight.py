"""Usage insight tasks: old daily totals are dropped."""

from huey import crontab

from app.insight import service
from jobs import huey
from jobs.context import task_context


@huey.periodic_task(crontab(hour="4", minute="23"))
def purge_old_counts():
    with task_context():
        service.purge_old()
