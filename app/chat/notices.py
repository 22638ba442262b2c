"""The chat's e-mails: away notices to the team, and agents' replies to visitors who left."""

from datetime import timedelta

from flask import current_app

from app import background
from app.accounts.models import Membership, User
from app.chat.models import Conversation, Message
from app.db import database, utcnow
from app.mail import service as mail
from app.widget.models import Site, Visitor

AWAY_NOTICE_GAP = timedelta(minutes=10)


def schedule_away_notice(conversation_id: int) -> None:
    """At most one e-mail per conversation per 10 minutes; later messages wait for the next one."""
    now = utcnow()
    conv = Conversation.get_or_none(Conversation.id == conversation_id)
    if conv is None or conv.away_pending:
        return
    if conv.away_notice_at is None or conv.away_notice_at <= now - AWAY_NOTICE_GAP:
        Conversation.update(away_pending=True).where(Conversation.id == conversation_id).execute()
        background.enqueue("chat.away_notice", conversation_id)
    else:
        Conversation.update(away_pending=True).where(Conversation.id == conversation_id).execute()
        wait = (conv.away_notice_at + AWAY_NOTICE_GAP - now).total_seconds()
        background.enqueue("chat.away_notice", conversation_id, delay=max(1, int(wait)))


# A pending notice's task runs within seconds of its due time; one still pending this long
# after it was due had its hand-over to the worker lost (the web process died between the
# flag's commit and the queue's).
AWAY_NOTICE_OVERDUE = timedelta(minutes=5)


def overdue_away_notices(now=None) -> list[int]:
    """Conversations whose away notice is pending but overdue, for the worker's sweep."""
    now = now or utcnow()
    due_before = now - AWAY_NOTICE_GAP - AWAY_NOTICE_OVERDUE
    never_sent = Conversation.away_notice_at.is_null() & (
        Conversation.created_at <= now - AWAY_NOTICE_OVERDUE)
    return [c.id for c in Conversation.select(Conversation.id).where(
        Conversation.away_pending & (never_sent | (Conversation.away_notice_at <= due_before)))]


def send_away_notice(conversation_id: int) -> None:
    """E-mail the team the visitor messages since the last notice (one e-mail per batch).

    One short write transaction reads the messages, marks the notice sent and stores the
    e-mails: a crash or a retry can neither mark a notice sent that is not in the outbox nor
    put the same messages in two notices. Inside it no message can land unseen (the web
    stamps a message inside its own write transaction, so any later one is stamped after
    this notice's time)."""
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
        url = f"{current_app.config['BASE_URL']}/dashboard/conversations/{conv.id}"
        emails = mail.store(members, "away_notice", f"New chat message on {conv.site.name}",
                            site=conv.site, visitor=conv.visitor, messages=messages, url=url,
                            conversation=conv)
    mail.hand_over([email.id for email in emails])


def email_reply(message_id: int) -> None:
    """E-mail an agent's reply to its visitor, who has left the page but gave an address."""
    message = Message.get_or_none((Message.id == message_id) & Message.visible_to_visitor())
    if message is None:
        return  # deleted meanwhile (or the team's private note): nothing to send
    conv = message.conversation
    if not conv.visitor.email:
        return
    author = message.author.name.split()[0] if message.author else "The team"
    mail.send(conv.visitor.email, "visitor_reply", f"{conv.site.name} answered your message",
              site=conv.site, message=message, author=author)
