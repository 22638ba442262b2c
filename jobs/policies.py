"""Policy tasks: a published version's announcement, cut into one e-mail task per batch of
account holders."""

from app import background
from app.policies import service
from jobs import huey
from jobs.context import task_context


@background.task("policies.announce")
@huey.task(retries=5, retry_delay=30, retry_backoff=2)
def announce(version_id: int):
    with task_context():
        service.announce(version_id)


# A batch that fails half-way (the database busy) runs again: notify() e-mails nobody twice.
@background.task("policies.notify")
@huey.task(retries=8, retry_delay=30, retry_backoff=2)
def notify(version_id: int, user_ids: list[int]):
    with task_context():
        service.notify(version_id, user_ids)
