"""Billing tasks: apply one Stripe webhook event, lapse unpaid plans, purge old records."""

from huey import crontab

from app import background
from app.billing import service
from jobs import huey
from jobs.context import task_context


# A Stripe that does not answer while the subscription is read back fails the task: Huey
# tries again with backoff (30 s … about 2 hours), and the event stays kept until applied.
@background.task("billing.event")
@huey.task(retries=8, retry_delay=30, retry_backoff=2)
def apply_event(event_id: int):
    with task_context():
        service.process(event_id)


@huey.periodic_task(crontab(minute="17"))
def lapse_unpaid():
    with task_context():
        service.lapse_unpaid()


@huey.periodic_task(crontab(hour="3", minute="41"))
def purge_billing_records():
    with task_context():
        service.purge_expired_records()
