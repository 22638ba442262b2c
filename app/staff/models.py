"""The staff area's record: the access log customers read."""

from peewee import CharField, DateTimeField, ForeignKeyField

from app.accounts.models import User, Workspace
from app.db import BaseModel, utcnow


class AuditEntry(BaseModel):
    """A Lumnar staff member looked at or changed a customer's data. The customer sees these."""

    workspace = ForeignKeyField(Workspace, backref="audit_entries", on_delete="CASCADE")
    staff = ForeignKeyField(User, null=True, on_delete="SET NULL")
    staff_email = CharField(max_length=254)  # kept if the staff account goes
    action = CharField(max_length=200)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "audit_entry"
