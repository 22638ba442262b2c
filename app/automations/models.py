"""Automation records: the vault's keys, the credentials they protect, automations, their
and their runs."""

from peewee import (
    SQL,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from app.accounts.models import Workspace
from app.db import BaseModel, utcnow


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



class Automation(BaseModel):
    """One tailored flow set up for a workspace: which registry flow, its configuration,
    its trigger, and the credentials it may use (by id, inside `config`)."""

    SCHEDULE, CHAT, WEBHOOK, MANUAL = "schedule", "chat", "webhook", "manual"
    TRIGGERS = {SCHEDULE: "Schedule", CHAT: "Chat event", WEBHOOK: "Inbound webhook",
                MANUAL: "Run now only"}
    CHAT_EVENTS = {
        "conversation_started": "Conversation started",
        "message_received": "Message received",
        "visitor_left_email": "Visitor left an e-mail",
        "conversation_resolved": "Conversation resolved",
    }

    workspace = ForeignKeyField(Workspace, backref="automations", on_delete="CASCADE")
    name = CharField(max_length=120)
    flow = CharField(max_length=60)  # registry name, e.g. "http_request"
    config = TextField(default="{}")  # JSON, validated against the flow's schema
    trigger = CharField(max_length=16, default=MANUAL)
    cron = CharField(max_length=120, default="")  # when trigger == schedule
    chat_event = CharField(max_length=40, default="")  # when trigger == chat
    webhook_secret = CharField(max_length=64, default="")  # inbound webhook URL token
    max_attempts = IntegerField(default=3)
    paused = BooleanField(default=False)
    # Paused because the workspace's plan allows fewer active automations (migration 14): a
    # plan that allows more again resumes it; the customer's own pauses are never touched.
    paused_for_plan = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    # The next scheduled slot (UTC), kept so the minute ticker finds due rows by index.
    next_run_at = DateTimeField(null=True, index=True)
    last_failure_mail_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class AutomationRun(BaseModel):
    QUEUED, RUNNING, SUCCEEDED, FAILED, RETRYING, SKIPPED = (
        "queued", "running", "succeeded", "failed", "retrying", "skipped")

    automation = ForeignKeyField(Automation, backref="runs", on_delete="CASCADE")
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE")  # scoping without a join
    trigger = CharField(max_length=16)
    # Scheduled runs carry their slot; UNIQUE(automation, slot) makes the ticker idempotent.
    # NULL for other triggers (SQLite lets NULLs repeat in a unique index).
    slot = DateTimeField(null=True)
    payload = TextField(default="{}")  # trigger data (JSON)
    dry_run = BooleanField(default=False)
    status = CharField(max_length=16, default=QUEUED)
    attempts = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    duration_ms = IntegerField(null=True)
    log = TextField(default="")  # redacted, at most 64 KB
    error = CharField(max_length=500, default="")

    class Meta:
        table_name = "automation_run"
        indexes = ((("automation", "slot"), True), (("workspace", "created_at"), False))




AUTOMATION_MODELS = [VaultCheck, WorkspaceKey, Credential, Automation, AutomationRun]
