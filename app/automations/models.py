"""Automation records: the vault's keys and the credentials they protect."""

from peewee import BlobField, CharField, DateTimeField, ForeignKeyField

from app.models import BaseModel, Workspace, utcnow


class VaultCheck(BaseModel):
    """One value encrypted with the master keys at set-up. If the configured keys cannot
    open it, the app refuses to start instead of failing later at run time."""

    token = BlobField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "vault_check"


class WorkspaceKey(BaseModel):
    """A workspace's own data key, stored only wrapped (encrypted) by the master keys.
    Deleting the workspace deletes this row, and with it any way to read its credentials,
    old backups included."""

    workspace = ForeignKeyField(Workspace, backref="vault_key", on_delete="CASCADE", unique=True)
    wrapped_key = BlobField()
    created_at = DateTimeField(default=utcnow)
    rotated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "workspace_key"


class Credential(BaseModel):
    KINDS = {
        "api_token": "API token",
        "oauth": "OAuth token pair",
        "login": "Username and password",
        "webhook_url": "Webhook URL",
        "secret_map": "Other secrets (name = value lines)",
    }

    workspace = ForeignKeyField(Workspace, backref="credentials", on_delete="CASCADE")
    platform = CharField(max_length=80)
    label = CharField(max_length=120)
    kind = CharField(max_length=20)
    payload = BlobField()  # Fernet token under the workspace's data key
    hint = CharField(max_length=8, default="")  # last four characters, to recognise it
    created_at = DateTimeField(default=utcnow)
    rotated_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)

    @property
    def masked(self) -> str:
        return f"••••{self.hint}" if self.hint else "••••"


AUTOMATION_MODELS = [VaultCheck, WorkspaceKey, Credential]
