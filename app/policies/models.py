"""The policies' records: each published version of a policy (privacy, terms, cookies), who
was e-mailed about it, and who acknowledged its notice on the dashboard."""

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from app.accounts.models import User
from app.db import BaseModel, utcnow


class PolicyVersion(BaseModel):
    """One version of one policy, never edited once published: a change is a new version.
    Versions of a kind take effect in the order of their numbers (the service refuses a
    version that would take effect before an earlier one), so the current version is the
    newest whose effective_at has passed."""

    KINDS = {"privacy": "Privacy policy", "terms": "Terms of service", "cookies": "Cookies and device storage"}

    kind = CharField(max_length=16)
    version = IntegerField()
    text = TextField()  # Markdown, rendered without raw HTML (app/policies/text.py)
    summary = TextField(default="")  # what changed, in a few plain sentences
    material = BooleanField(default=False)  # changes what people agreed to: 30 days' notice
    # Announced versions are e-mailed and shown on the dashboard until acknowledged; the first
    # privacy version, made from the page that existed before versions, is not.
    announced = BooleanField(default=True)
    published_at = DateTimeField(default=utcnow)
    effective_at = DateTimeField()
    published_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "policy_version"
        indexes = ((("kind", "version"), True),)

    @property
    def title(self) -> str:
        return self.KINDS.get(self.kind, self.kind)


class PolicyNotice(BaseModel):
    """The e-mail about a version went to this person: a batch run twice (a retried task)
    e-mails nobody twice."""

    version = ForeignKeyField(PolicyVersion, on_delete="CASCADE", backref="+")
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    email_id = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "policy_notice"
        indexes = ((("version", "user"), True),)


class PolicyAcknowledgement(BaseModel):
    """This person read the notice of this version and said so on the dashboard."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    version = ForeignKeyField(PolicyVersion, on_delete="CASCADE", backref="+")
    acknowledged_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "policy_acknowledgement"
        # (user, version) first: the dashboard's one lookup reads it by user (service.notices_for).
        indexes = ((("user", "version"), True),)


POLICY_MODELS = [PolicyVersion, PolicyNotice, PolicyAcknowledgement]
