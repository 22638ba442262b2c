"""Restriction and objection records: who objected to which kind of e-mail, and which kind
each e-mail in the outbox is (its unsubscribe headers are built from it when it is sent)."""

from peewee import CharField, DateTimeField, ForeignKeyField

from app.db import BaseModel, utcnow
from app.mail.models import OutboundEmail


class EmailObjection(BaseModel):
    """This address wants no more e-mails of this kind (one click in a List-Unsubscribe
    header, or the Privacy & data page). Kept as long as it is to be honoured."""

    email = CharField(max_length=254)  # lower-cased
    kind = CharField(max_length=40)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "email_objection"
        indexes = ((("email", "kind"), True),)


class OutboundKind(BaseModel):
    """The kind of a non-essential e-mail in the outbox: the worker adds its List-Unsubscribe
    headers when it sends it. Essential e-mails have no row. Goes with its e-mail."""

    email = ForeignKeyField(OutboundEmail, primary_key=True, on_delete="CASCADE")
    kind = CharField(max_length=40)

    class Meta:
        table_name = "outbound_email_kind"


RESTRICTION_MODELS = [EmailObjection, OutboundKind]
