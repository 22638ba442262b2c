"""Automation tasks: one run's attempt, the minute ticker, lost-task recovery, and run-log retention."""

from datetime import datetime

from huey import crontab

from app import background
from app.automations import service
from app.privacy import erasure
from jobs import huey
from jobs.context import task_context


@background.task("automations.run")
@huey.task()
def run_automation(run_id: int):
    with task_context():
        service.execute(run_id)


@huey.periodic_task(crontab(minute="*"))
def tick():
    with task_context():
        service.tick()


@huey.task()
def tick_at(iso: str):
    """The ticker at a given moment (UTC, ISO 8601): how tests and operators drive the clock
    through the real consumer without waiting for the minute to come."""
    with task_context():
        service.tick(datetime.fromisoformat(iso).replace(tzinfo=None))


@huey.periodic_task(crontab(minute="*/10"))
def requeue_stalled_runs():
    with task_context():
        service.requeue_stalled()


@huey.periodic_task(crontab(minute="41", hour="3"))
def purge_run_logs():
    with task_context():
        if service.purge_run_logs():
            erasure.request_erasure()
