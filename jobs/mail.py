"""Mail tasks: deliver one outbox row, and a sweep that retries anything left behind."""

from huey import crontab

from app import background
from app.mail import service
from jobs import huey
from jobs.context import task_context


# Huey retries with backoff: 30 s, 1 min, 2 min … about 2 hours in all; the sweep below picks
# up whatever is still queued after that, so an outage never loses a message.
@background.task("mail.deliver")
@huey.task(retries=8, retry_delay=30, retry_backoff=2)
def deliver_email(email_id: int):
    with task_context():
        service.deliver(email_id)


@huey.periodic_task(crontab(minute="*/10"))
def sweep_outbox():
    with task_context():
        for email_id in service.stalled_ids():
            deliver_email(email_id)
