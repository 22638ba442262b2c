"""Deletion tasks: remind before a deletion, carry out those whose grace period is over."""

from huey import crontab

from app.privacy.deletion import service
from jobs import huey
from jobs.context import task_context


# Every hour: a deletion happens within the hour after its grace period ends, and one left
# half-done (a crash, Stripe not answering) is taken up again an hour later.
@huey.periodic_task(crontab(minute="37"))
def carry_out_deletions():
    with task_context():
        service.send_reminders()
        service.run_due()
