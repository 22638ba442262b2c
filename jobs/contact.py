"""Contact channel tasks: the staff's morning digest of requests waiting for an answer."""

from huey import crontab

from app.contact import service
from jobs import huey
from jobs.context import task_context


@huey.periodic_task(crontab(hour="7", minute="3"))
def request_digest():
    with task_context():
        service.send_digest()
