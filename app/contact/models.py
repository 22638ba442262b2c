"""The contact channel's records: each request people send us (from the contact page or an
owner's dashboard) with its due date, and the thread of answers staff send back."""

from peewee import CharField, DateField, DateTimeField, ForeignKeyField, TextField

from app.accounts.models import User, Workspace
from app.db import BaseModel, utcnow


class ContactRequest(BaseModel):
    """A message or request to Lumnar, answered by a due date. A request filed from the
    dashboard names its workspace; one sent from the public contact page names none. The row
    outlives the workspace and the account (the link becomes empty), so that how the request
    was handled can still be shown."""

    QUESTION, PRIVACY, SECURITY, OTHER = "question", "privacy", "security", "other"
    TOPICS = {QUESTION: "Question", PRIVACY: "Privacy request", SECURITY: "Security report",
              OTHER: "Something else"}
    KINDS = {"access": "A copy of my data (access)", "correction": "Correct my data",
             "deletion": "Delete my data", "objection": "Object to a use of my data",
             "restriction": "Restrict a use of my data",
             "portability": "My data in a portable format", "other": "Another request"}
    NEW, IN_PROGRESS, ANSWERED, CLOSED = "new", "in_progress", "answered", "closed"
    STATUSES = {NEW: "New", IN_PROGRESS: "In progress", ANSWERED: "Answered", CLOSED: "Closed"}
    OPEN = (NEW, IN_PROGRESS)  # waiting for us: these count for overdue and the digest

    reference = CharField(max_length=16, unique=True)
    topic = CharField(max_length=16)
    kind = CharField(max_length=16, default="")  # privacy requests: which right
    name = CharField(max_length=120)
    email = CharField(max_length=254)
    message = TextField()
    workspace = ForeignKeyField(Workspace, null=True, backref="contact_requests",
                                on_delete="SET NULL")
    filed_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    status = CharField(max_length=16, default=NEW, index=True)
    received_at = DateTimeField(default=utcnow)
    due_on = DateField()
    extended_at = DateTimeField(null=True)  # at most once
    extension_reason = TextField(default="")
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "contact_request"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    def overdue_days(self, today) -> int:
        """Days past the due date while still waiting for us; 0 when not overdue."""
        if not self.is_open or self.due_on >= today:
            return 0
        return (today - self.due_on).days

    @property
    def topic_label(self) -> str:
        return self.TOPICS.get(self.topic, self.topic)

    @property
    def kind_label(self) -> str:
        return self.KINDS.get(self.kind, "")

    @property
    def status_label(self) -> str:
        return self.STATUSES.get(self.status, self.status)

    @classmethod
    def of_workspace(cls, workspace_id: int):
        return cls.select().where(cls.workspace == workspace_id)


class RequestMessage(BaseModel):
    """One entry of a request's thread: a staff reply, or the notice of an extension. Each was
    e-mailed to the requester as written here."""

    REPLY, EXTENSION = "reply", "extension"

    request = ForeignKeyField(ContactRequest, backref="thread", on_delete="CASCADE")
    kind = CharField(max_length=16, default=REPLY)
    staff = ForeignKeyField(User, null=True, on_delete="SET NULL")
    author_name = CharField(max_length=120)  # kept if the staff account goes
    body = TextField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "contact_request_message"


CONTACT_MODELS = [ContactRequest, RequestMessage]
