"""Chat tasks: away notices and e-mailed replies, retention, and the search index's upkeep."""

from huey import crontab

from app import background
from app.chat import notices, retention, service
from app.privacy import erasure
from jobs import huey
from jobs.context import task_context


@background.task("chat.away_notice")
@huey.task()
def send_away_notice(conversation_id: int):
    with task_context():
        notices.send_away_notice(conversation_id)


@huey.periodic_task(crontab(minute="*/5"))
def sweep_away_notices():
    """Send the away notices whose task was lost: a pending flag must never stay set for
    good (the conversation would then get no notice again). A notice sent twice is harmless:
    the second finds no message since the first and sends nothing."""
    with task_context():
        for conversation_id in notices.overdue_away_notices():
            send_away_notice(conversation_id)


@background.task("chat.email_reply")
@huey.task()
def email_reply_to_visitor(message_id: int):
    with task_context():
        notices.email_reply(message_id)


@huey.periodic_task(crontab(minute="17", hour="3"))
def purge_old_conversations():
    # At the worker's own CPU priority: a purge transaction holds the one write lock, and at
    # the lowest priority it waited for the CPU while holding it (the chat behind it). Its
    # rests (app.db.Pace) are what keep it to part of a core.
    with task_context():
        if retention.purge_expired():
            erasure.request_erasure()


@huey.periodic_task(crontab(minute="*"))
def merge_search_index():
    """Here and not in the web process, so that no message waits behind it."""
    with task_context():
        service.keep_search_index()


@huey.periodic_task(crontab(minute="*/30"))
def purge_stale_events():
    with task_context():
        retention.purge_stale_events()
