"""The outbox's record."""

from peewee import CharField, DateTimeField, IntegerField, TextField

from app.db import BaseModel, utcnow


class OutboundEmail(BaseModel):
    """The outbox: every e-mail is a row first, so nothing is lost when SMTP is down."""

    QUEUED, SENDING, SENT = "queued", "sending", "sent"

    to = CharField(max_length=254)
    subject = CharField(max_length=255)
    text_body = TextField()
    html_body = TextField()
    status = CharField(max_length=16, default=QUEUED, index=True)
    attempts = IntegerField(default=0)
    last_error = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    claimed_at = DateTimeField(null=True)
    sent_at = DateTimeField(null=True)
    # What the e-mail is about (migration 17), so that deleting a workspace or a conversation
    # finds the e-mails that mention it. Plain ids: the outbox row outlives neither.
    workspace_id = IntegerField(null=True, index=True)
    conversation_id = IntegerField(null=True, index=True)

    class Meta:
        table_name = "outbound_email"
