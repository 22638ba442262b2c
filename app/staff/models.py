"""The staff area's record: the access log customers read."""

from peewee import CharField, DateTimeField, IntegerField

from app.db import BaseModel, utcnow


class AuditEntry(BaseModel):
    """Someone (Lumnar staff, or an owner for their own switches) looked at or changed a
    customer's data. The customer sees these.

    Plain integer columns, no foreign keys (migration 17): the log is kept two years, also
    after its workspace is deleted; a deletion anonymises the customer's own entries
    (app/privacy/deletion) instead of cascading them away."""

    workspace_id = IntegerField(index=True)
    staff_id = IntegerField(null=True)
    staff_email = CharField(max_length=254)  # kept if the staff account goes
    action = CharField(max_length=200)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "audit_entry"
