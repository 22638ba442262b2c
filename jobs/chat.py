"""Chat tasks: away-mode e-mails, replies e-mailed to absent visitors, and retention."""

import time
from datetime import timedelta

from huey import crontab

from app.accounts.models import Membership, User
from app.chat import retention
from app.chat.models import Conversation, Message, Site, Visitor
from app.db import database, utcnow
from app.mail import service as mail
from jobs import huey
from jobs.context import task_context

SEARCH_MERGE_BUDGET = 10.0  # seconds of merging per run, at most
SEARCH_MERGE_PAUSE = 0.05  # between two merge steps


@huey.task()
def send_away_notice(conversation_id: int):
    """E-mail the team the visitor messages since the last notice (one e-mail per batch).

    One short write transaction reads the messages, marks the notice sent and stores the
    e-mails: a crash or a retry can neither mark a notice sent that is not in the outbox nor
    put the same messages in two notices. Inside it no message can land unseen (the web
    stamps a message inside its own write transaction, so any later one is stamped after
    this notice's time)."""
    with task_context() as app:
        with database.atomic():
            conv = (Conversation.select(Conversation, Visitor, Site).join(Visitor)
                    .switch(Conversation).join(Site)
                    .where(Conversation.id == conversation_id).first())
            if conv is None:
                return
            now = utcnow()
            since = conv.away_notice_at or conv.created_at - timedelta(seconds=1)
            messages = list(Message.select().where(
                (Message.conversation == conv) & (Message.sender == Message.VISITOR)
                & (Message.created_at >= since)).order_by(Message.id))
            Conversation.update(away_notice_at=now, away_pending=False).where(
                Conversation.id == conversation_id).execute()
            if not messages:
                return
            members = [u.email for u in User.select(User.email).join(Membership)
                       .where(Membership.workspace == conv.workspace_id)]
            url = f"{app.config['BASE_URL']}/dashboard/conversations/{conv.id}"
            emails = mail.store(members, "away_notice", f"New chat message on {conv.site.name}",
                                site=conv.site, visitor=conv.visitor, messages=messages, url=url)
        mail.hand_over([email.id for email in emails])


@huey.periodic_task(crontab(minute="*/5"))
def sweep_away_notices():
    """Send the away notices whose task was lost: a pending flag must never stay set for
    good (the conversation would then get no notice again). A notice sent twice is harmless:
    the second finds no message since the first and sends nothing."""
    from app.chat import service

    with task_context():
        for conversation_id in service.overdue_away_notices():
            send_away_notice(conversation_id)


@huey.task()
def email_reply_to_visitor(message_id: int):
    with task_context():
        message = Message.get_or_none(Message.id == message_id)
        if message is None:
            return  # deleted meanwhile: nothing to send
        conv = message.conversation
        if not conv.visitor.email:
            return
        author = message.author.name.split()[0] if message.author else "The team"
        mail.send(conv.visitor.email, "visitor_reply", f"{conv.site.name} answered your message",
                  site=conv.site, message=message, author=author)


@huey.periodic_task(crontab(minute="17", hour="3"))
def purge_old_conversations():
    with task_context():
        retention.purge_expired()


@huey.periodic_task(crontab(minute="*"))
def merge_search_index():
    """The search index's upkeep, done here and not in the web process, so that no message
    waits behind it: first the messages written since the last run are indexed (migration
    11), then segments are merged (automatic merging is off: migration 8). Small steps, each
    its own short write transaction, with pauses between, for at most a few seconds each."""
    from app.chat import service

    with task_context():
        deadline = time.monotonic() + SEARCH_MERGE_BUDGET
        while service.index_new_messages() and time.monotonic() < deadline:
            time.sleep(SEARCH_MERGE_PAUSE)  # let waiting writers have the lock in between
        deadline = time.monotonic() + SEARCH_MERGE_BUDGET
        while service.merge_search_index() and time.monotonic() < deadline:
            time.sleep(SEARCH_MERGE_PAUSE)


@huey.periodic_task(crontab(minute="*/30"))
def purge_stale_events():
    with task_context():
        retention.purge_stale_events()
