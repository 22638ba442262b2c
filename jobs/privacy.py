"""Data-rights tasks: build an export, purge the expired ones."""

from huey import crontab

from app import background
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
