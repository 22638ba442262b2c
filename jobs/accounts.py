"""Account tasks: the daily digest of staff access to each workspace."""

from huey import crontab

from app.accounts import alerts
from jobs import huey
from jobs.context import task_context


# One e-mail a day per workspace whose access log grew, rather than one per page staff open.
@huey.periodic_task(crontab(hour="7", minute="5"))
def access_digests():
    with task_context():
        alerts.send_access_digests()
