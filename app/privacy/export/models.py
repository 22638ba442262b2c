"""Export records: who asked for which export, how far it has got, and where its file is."""

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField

from app.accounts.models import User, Workspace
from app.db import BaseModel, utcnow


class ExportRequest(BaseModel):
    """One export: of a whole workspace (asked by an owner) or of one person's own data (any
    member). Kept until its file expires, then both go."""

    WORKSPACE, PERSONAL = "workspace", "personal"
    QUEUED, RUNNING, READY, FAILED = "queued", "running", "ready", "failed"
    ACTIVE = (QUEUED, RUNNING)

    workspace = ForeignKeyField(Workspace, backref="+", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="+", on_delete="CASCADE")
    scope = CharField(max_length=16)
    status = CharField(max_length=16, default=QUEUED)
    # The workspace's id while the export is queued or running, else NULL: a unique column, so
    # the database itself refuses a second export of a workspace at a time (NULLs never clash).
    running_for = IntegerField(null=True, unique=True)
    kinds_done = IntegerField(default=0)
    kinds_total = IntegerField(default=0)
    rows_written = IntegerField(default=0)
    filename = CharField(max_length=80, default="")  # inside <DATA_DIR>/exports/
    size = IntegerField(default=0)
    error = CharField(max_length=300, default="")
    created_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)

    class Meta:
        table_name = "export_request"

    @property
    def active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        if self.status == self.READY:
            return 100
        return int(100 * self.kinds_done / self.kinds_total) if self.kinds_total else 0


EXPORT_MODELS = [ExportRequest]
