"""The nightly backup of the one database file (SQLite only: a PostgreSQL set-up is backed
up by its database service, which this product does not run)."""

import logging

from huey import crontab

from app import backup
from app.db import is_postgres
from jobs import huey
from jobs.context import task_context

log = logging.getLogger(__name__)


@huey.periodic_task(crontab(hour="2", minute="37"))
def nightly_backup():
    with task_context() as app:
        if is_postgres():
            return
        made, deleted = backup.scheduled_backup(app.config)
        log.info("backup %s made; %d older backups deleted by the schedule", made.name, len(deleted))
