"""A deletion waiting for its grace period to end."""

from peewee import CharField, DateTimeField, IntegerField

from app.db import BaseModel, utcnow


class DeletionRequest(BaseModel):
    """A workspace or an account to delete once `delete_after` has passed.

    Plain integer ids, no foreign keys: the row must outlive neither more nor less than the
    deletion it describes, whatever is deleted around it. `notify_email` is where the
    reminder and the final confirmation go: copied at request time, because by the end the
    account that asked may be gone."""

    WORKSPACE, ACCOUNT = "workspace", "account"

    kind = CharField(max_length=16)
    workspace_id = IntegerField(null=True, index=True)
    user_id = IntegerField(null=True, index=True)
    requested_by = IntegerField()
    notify_email = CharField(max_length=254)
    requested_at = DateTimeField(default=utcnow)
    delete_after = DateTimeField(index=True)
    reminded_at = DateTimeField(null=True)
    started_at = DateTimeField(null=True)

    class Meta:
        table_name = "deletion_request"


DELETION_MODELS = [DeletionRequest]
