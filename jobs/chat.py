"""Chat tasks: away-mode e-mails, replies e-mailed to absent visitors, and retention."""

from datetime import timedelta

from huey import crontab

from app.chat import retention
from app.chat.models import Conversation, Message, Site, Visitor
from app.mail import service as mail
from app.models import Membership, User, utcnow
from jobs import huey
from jobs.context import task_context


@huey.task()
def send_away_notice(conversation_id: int):
    """E-mail the team the visitor messages since the last notice (one e-mail per batch)."""
    with task_context() as app:
        conv = (Conversation.select(Conversation, Visitor, Site).join(Visitor)
                .switch(Conversation).join(Site).where(Conversation.id == conversation_id).first())
        if conv is None:
            return
        since = conv.away_notice_at or conv.created_at - timedelta(seconds=1)
        messages = list(Message.select().where(
            (Message.conversation == conv) & (Message.sender == Message.VISITOR)
            & (Message.created_at >= since)).order_by(Message.id))
        Conversation.update(away_notice_at=utcnow(), away_pending=False).where(
            Conversation.id == conversation_id).execute()
        if not messages:
            return
        members = (User.select(User.email).join(Membership)
                   .where(Membership.workspace == conv.workspace_id))
        url = f"{app.config['BASE_URL']}/dashboard/conversations/{conv.id}"
        for member in members:
            mail.send(member.email, "away_notice", f"New chat message on {conv.site.name}",
                      site=conv.site, visitor=conv.visitor, messages=messages, url=url)


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


@huey.periodic_task(crontab(minute="*/30"))
def purge_stale_events():
    with task_context():
        retention.purge_stale_events()
