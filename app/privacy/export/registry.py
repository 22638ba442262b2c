"""The one list of what an export holds: each kind of data, its JSON file, its schema, and
which rows of it belong to a workspace's export or to one person's.

Every table that holds personal data is a kind here, or is named in NOT_EXPORTED with the
reason it is left out (a test walks every product table and fails on one in neither). An
area that adds such a table adds its kind with `register()`.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
)

from app.accounts.models import (
    Invitation,
    KnownBrowser,
    LoginThrottle,
    Membership,
    User,
    UserSession,
    Workspace,
)
from app.automations.models import Automation, AutomationRun, Credential, VaultCheck, WorkspaceKey
from app.billing.models import BillingAccount, Invoice, StripeEvent
from app.chat.labels import AssignmentRule, ConversationLabel, Label, MemberLimit
from app.chat.models import (
    Attachment,
    ChatEvent,
    Conversation,
    EventCounter,
    Message,
    Presence,
    SavedReply,
)
from app.chat.notes import NoteMention
from app.chat.ratings import ConversationRating
from app.contact.models import ContactRequest, RequestMessage
from app.dashboard.alerts import AlertSettings
from app.insight.models import InsightCount, InsightObjection
from app.mail.models import OutboundEmail
from app.policies.models import PolicyAcknowledgement, PolicyNotice, PolicyVersion
from app.privacy.deletion.models import DeletionRequest
from app.privacy.export.models import ExportRequest
from app.privacy.restriction.models import RESTRICTION_MODELS
from app.reports.models import ConversationFact, ReportCursor
from app.staff.models import AuditEntry
from app.widget.hours import SiteHours
from app.widget.identity import SiteIdentity, VerifiedVisitor
from app.widget.language import SiteLanguage, SiteText
from app.widget.models import OriginSeen, Site, Visitor

SCHEMA_VERSION = 1
MASK = "••••"


@dataclass(frozen=True)
class Scope:
    """Whose data an export gathers: a whole workspace, or one person's own."""

    workspace_id: int
    user_id: int
    email: str
    personal: bool


@dataclass(frozen=True)
class Kind:
    """One JSON file of the export. `fields` are copied from the model as they are (a foreign
    key as `<name>_id`); `extra` adds computed values, each as (JSON type, function of the
    row). `workspace` and `personal` give the rows for each kind of export (None: this kind is
    not in that export). `files` names a kind whose rows also become files (attachments)."""

    name: str
    description: str
    model: type
    fields: tuple[str, ...]
    workspace: Callable[[Scope], object] | None
    personal: Callable[[Scope], object] | None
    extra: dict = field(default_factory=dict)
    files: bool = False

    def query(self, scope: Scope):
        source = self.personal if scope.personal else self.workspace
        return None if source is None else source(scope)

    def columns(self) -> list:
        """The model fields this kind reads (never a blob: files are read on their own)."""
        model_fields = self.model._meta.fields
        return [model_fields[name] for name in self.fields]

    def to_json(self, row) -> dict:
        out = {}
        for f in self.columns():
            out[key_of(f)] = plain(row.__data__.get(f.name))
        for name, (_, value) in self.extra.items():
            out[name] = plain(value(row))
        return out

    def schema(self) -> dict:
        properties = {key_of(f): type_of(f) for f in self.columns()}
        for name, (json_type, _) in self.extra.items():
            properties[name] = {"type": json_type}
        return {"title": self.name, "description": self.description, "type": "array",
                "items": {"type": "object", "additionalProperties": False,
                          "required": list(properties), "properties": properties}}


def key_of(f) -> str:
    return f.column_name if isinstance(f, ForeignKeyField) else f.name


def type_of(f) -> dict:
    if isinstance(f, BlobField):
        raise TypeError(f"{f.model.__name__}.{f.name} is a blob: export it as a file")
    if isinstance(f, BooleanField):
        answer = {"type": "boolean"}
    elif isinstance(f, (AutoField, IntegerField, ForeignKeyField)):
        answer = {"type": "integer"}
    elif isinstance(f, DateTimeField):
        answer = {"type": "string", "format": "date-time"}
    elif isinstance(f, DateField):
        answer = {"type": "string", "format": "date"}
    else:
        answer = {"type": "string"}
    if f.null:
        answer["type"] = [answer["type"], "null"]
    return answer


def plain(value):
    """A value as JSON holds it: times in UTC with their zone said."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def attachment_path(row) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", row.filename).strip("._") or "file"
    return f"attachments/{row.id}-{safe[:80]}"


def _settings(row) -> dict:
    try:
        value = json.loads(row.config or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- which rows -------------------------------------------------------------------------------


def _own_user(model_user_field):
    return lambda s: model_user_field.model.select().where(model_user_field == s.user_id)


def _members(s: Scope):
    return Membership.select(Membership.user).where(Membership.workspace == s.workspace_id)


def _requests(s: Scope):
    if s.personal:
        return ContactRequest.select().where((ContactRequest.filed_by == s.user_id)
                                             | (ContactRequest.email == s.email))
    return ContactRequest.select().where(ContactRequest.workspace == s.workspace_id)


def _attachments():
    # The files themselves are read a few at a time while they are written, not here.
    return Attachment.select(*(f for f in Attachment._meta.sorted_fields if f.name != "data"))


def _authored(s: Scope):
    return Message.select(Message.id).where(Message.author == s.user_id)


KINDS: list[Kind] = [
    Kind("account", "The account of the person who asked for this export (never its password).",
         User, ("id", "name", "email", "email_verified_at", "is_staff", "created_at"),
         workspace=lambda s: User.select().where(User.id == s.user_id),
         personal=lambda s: User.select().where(User.id == s.user_id)),
    Kind("sessions", "The browsers signed in to this account now (the session keys are left out).",
         UserSession, ("id", "user_agent", "created_at", "last_seen_at"),
         workspace=_own_user(UserSession.user), personal=_own_user(UserSession.user)),
    Kind("browsers", "Every browser this account has signed in from.",
         KnownBrowser, ("id", "device", "first_seen_at"),
         workspace=_own_user(KnownBrowser.user), personal=_own_user(KnownBrowser.user)),
    Kind("usage_objection", "When this person objected to usage counting (empty: never).",
         InsightObjection, ("objected_at",),
         workspace=_own_user(InsightObjection.user), personal=_own_user(InsightObjection.user)),
    Kind("alert_settings", "This person's alerts: sound, desktop notifications, muted sites (ids).",
         AlertSettings, ("sound", "notify", "muted_sites", "updated_at"),
         workspace=_own_user(AlertSettings.user), personal=_own_user(AlertSettings.user)),
    Kind("emails", "E-mails Lumnar sent to this person's address: to whom, subject, when (the "
         "bodies are left out: some carried sign-in links).",
         OutboundEmail, ("id", "to", "subject", "status", "created_at", "sent_at"),
         workspace=lambda s: OutboundEmail.select().where(OutboundEmail.to == s.email),
         personal=lambda s: OutboundEmail.select().where(OutboundEmail.to == s.email)),
    Kind("workspace", "The workspace and its settings.",
         Workspace, ("id", "name", "created_at", "timezone", "run_log_days", "automations_paused",
                     "plan", "plan_status", "suspended_at", "processing_restricted", "restricted_at"),
         workspace=lambda s: Workspace.select().where(Workspace.id == s.workspace_id), personal=None),
    Kind("members", "The workspace's members (a personal export: the workspaces this person "
         "belongs to).",
         Membership, ("id", "workspace", "user", "role", "created_at"),
         extra={"name": ("string", lambda r: r.user.name), "email": ("string", lambda r: r.user.email)},
         workspace=lambda s: Membership.select(Membership, User).join(User)
         .where(Membership.workspace == s.workspace_id),
         personal=lambda s: Membership.select(Membership, User).join(User)
         .where(Membership.user == s.user_id)),
    Kind("invitations", "Invitations to join the workspace (a personal export: those this person "
         "sent or received).",
         Invitation, ("id", "workspace", "email", "role", "invited_by", "created_at", "expires_at",
                      "accepted_at", "revoked_at"),
         workspace=lambda s: Invitation.select().where(Invitation.workspace == s.workspace_id),
         personal=lambda s: Invitation.select().where((Invitation.email == s.email)
                                                      | (Invitation.invited_by == s.user_id))),
    Kind("sites", "The websites the chat widget is installed on, and their settings.",
         Site, ("id", "name", "site_key", "allowed_origins", "greeting", "accent_color",
                "away_message", "retention_days", "enabled", "created_at", "launcher_label",
                "consent_required"),
         workspace=lambda s: Site.select().where(Site.workspace == s.workspace_id), personal=None),
    Kind("site_hours", "Each site's business hours: a weekly schedule in the workspace's time zone "
         "and its closed days.", SiteHours, ("id", "site", "weekly", "closed_days", "updated_at"),
         workspace=lambda s: SiteHours.select().join(Site).where(Site.workspace == s.workspace_id),
         personal=None),
    Kind("site_languages", "Each site's default language for the chat widget.", SiteLanguage,
         ("id", "site", "default_language"),
         workspace=lambda s: SiteLanguage.select().join(Site).where(Site.workspace == s.workspace_id),
         personal=None),
    Kind("site_texts", "Each site's greeting and away message per language.", SiteText,
         ("id", "site", "language", "greeting", "away_message"),
         workspace=lambda s: SiteText.select().join(Site).where(Site.workspace == s.workspace_id),
         personal=None),
    Kind("visitors", "People who opened the chat on the workspace's sites.",
         Visitor, ("id", "site", "name", "email", "first_page_url", "first_seen_at", "last_seen_at"),
         workspace=lambda s: Visitor.select().where(Visitor.site.in_(
             Site.select(Site.id).where(Site.workspace == s.workspace_id))), personal=None),
    Kind("verified_visitors", "Visitors verified as signed-in users of the workspace's sites: "
         "the site's own user id of each.", VerifiedVisitor,
         ("id", "site", "visitor", "external_id", "verified_at"),
         workspace=lambda s: VerifiedVisitor.select().join(Site).where(
             Site.workspace == s.workspace_id), personal=None),
    Kind("conversations", "Conversations; their messages are in messages.json (conversation_id).",
         Conversation, ("id", "site", "visitor", "status", "assignee", "started_page_url",
                        "created_at", "last_activity_at", "over_limit"),
         workspace=lambda s: Conversation.select().where(Conversation.workspace == s.workspace_id),
         personal=None),
    Kind("messages", "Every message of every conversation; sender `note` is an agent's private "
         "note, which only the team sees (a personal export: the messages this person wrote).",
         Message, ("id", "conversation", "sender", "author", "body", "created_at", "over_limit"),
         workspace=lambda s: Message.select().where(Message.workspace_id == s.workspace_id),
         personal=lambda s: Message.select().where(Message.author == s.user_id)),
    Kind("note_mentions", "Which members each private note mentioned (a personal export: the "
         "notes that mentioned this person).",
         NoteMention, ("id", "message", "user", "created_at"),
         workspace=lambda s: NoteMention.select().where(NoteMention.workspace_id == s.workspace_id),
         personal=lambda s: NoteMention.select().where(NoteMention.user == s.user_id)),
    Kind("attachments", "Files sent in messages; each file is in the export at `file`.",
         Attachment, ("id", "message", "filename", "content_type", "size", "created_at"),
         extra={"file": ("string", attachment_path)}, files=True,
         workspace=lambda s: _attachments().where(Attachment.workspace_id == s.workspace_id),
         personal=lambda s: _attachments().where(Attachment.message.in_(_authored(s)))),
    Kind("saved_replies", "The workspace's saved replies.",
         SavedReply, ("id", "shortcut", "body", "created_at"),
         workspace=lambda s: SavedReply.select().where(SavedReply.workspace == s.workspace_id),
         personal=None),
    Kind("labels", "The workspace's labels for conversations.",
         Label, ("id", "name", "colour", "created_at"),
         workspace=lambda s: Label.select().where(Label.workspace == s.workspace_id), personal=None),
    Kind("conversation_labels", "Which label is on which conversation, since when.",
         ConversationLabel, ("id", "conversation", "label", "created_at"),
         workspace=lambda s: ConversationLabel.select().join(Label).where(
             Label.workspace == s.workspace_id), personal=None),
    Kind("conversation_ratings", "Visitors' ratings of their resolved conversations (good, okay "
         "or bad) with their comments.",
         ConversationRating, ("id", "conversation", "rating", "comment", "created_at"),
         workspace=lambda s: ConversationRating.select().where(
             ConversationRating.workspace_id == s.workspace_id), personal=None),
    Kind("member_limits", "The most open conversations round-robin may give each member "
         "(0: no limit).", MemberLimit, ("membership", "max_open"),
         workspace=lambda s: MemberLimit.select().join(Membership).where(
             Membership.workspace == s.workspace_id), personal=None),
    Kind("automations", "Automations with their settings (an inbound webhook's secret address "
         "shows only as masked).",
         Automation, ("id", "name", "flow", "trigger", "cron", "chat_event", "max_attempts",
                      "paused", "paused_for_plan", "next_run_at", "created_at", "updated_at"),
         extra={"settings": ("object", _settings),
                "webhook_secret": ("string", lambda r: MASK if r.webhook_secret else "")},
         workspace=lambda s: Automation.select().where(Automation.workspace == s.workspace_id),
         personal=None),
    Kind("credentials", "Credentials the automations use, by label only: a secret is never "
         "exported (`masked` shows its last characters at most).",
         Credential, ("id", "platform", "label", "kind", "created_at", "rotated_at", "last_used_at"),
         extra={"masked": ("string", lambda r: r.masked)},
         workspace=lambda s: Credential.select(*(f for f in Credential._meta.sorted_fields
                                                 if f.name != "payload"))
         .where(Credential.workspace == s.workspace_id),
         personal=None),
    Kind("runs", "Runs of the automations, with their logs.",
         AutomationRun, ("id", "automation", "trigger", "slot", "payload", "dry_run", "status",
                         "attempts", "created_at", "started_at", "finished_at", "duration_ms",
                         "log", "error"),
         workspace=lambda s: AutomationRun.select().where(AutomationRun.workspace == s.workspace_id),
         personal=None),
    Kind("billing_account", "The billing details of the workspace.",
         BillingAccount, ("id", "stripe_customer_id", "subscription_id", "subscription_status",
                          "plan", "interval", "current_period_end", "cancel_at_period_end",
                          "payment_failed_at", "name", "country", "address", "created_at",
                          "updated_at"),
         workspace=lambda s: BillingAccount.select().where(BillingAccount.workspace_id == s.workspace_id),
         personal=None),
    Kind("invoices", "The workspace's invoices.",
         Invoice, ("id", "stripe_invoice_id", "number", "issued_at", "amount_cents", "tax_cents",
                   "currency", "status", "hosted_url", "created_at"),
         workspace=lambda s: Invoice.select().where(Invoice.workspace_id == s.workspace_id),
         personal=None),
    Kind("policy_acknowledgements", "Which policy versions each person acknowledged, and when.",
         PolicyAcknowledgement, ("id", "user", "version", "acknowledged_at"),
         workspace=lambda s: PolicyAcknowledgement.select().where(
             PolicyAcknowledgement.user.in_(_members(s))),
         personal=_own_user(PolicyAcknowledgement.user)),
    Kind("policy_notices", "Which policy change notices were e-mailed to each person.",
         PolicyNotice, ("id", "user", "version", "created_at"),
         workspace=lambda s: PolicyNotice.select().where(PolicyNotice.user.in_(_members(s))),
         personal=_own_user(PolicyNotice.user)),
    Kind("requests", "Requests and messages sent to Lumnar, and how each was handled.",
         ContactRequest, ("id", "reference", "topic", "kind", "name", "email", "message",
                          "workspace", "filed_by", "status", "received_at", "due_on",
                          "extended_at", "extension_reason", "updated_at"),
         workspace=_requests, personal=_requests),
    Kind("request_replies", "Lumnar's replies to those requests.",
         RequestMessage, ("id", "request", "kind", "author_name", "body", "created_at"),
         workspace=lambda s: RequestMessage.select().where(
             RequestMessage.request.in_(_requests(s).select(ContactRequest.id))),
         personal=lambda s: RequestMessage.select().where(
             RequestMessage.request.in_(_requests(s).select(ContactRequest.id)))),
    Kind("access_log", "Each time Lumnar staff looked at or changed the workspace's data.",
         AuditEntry, ("id", "staff_email", "action", "created_at"),
         workspace=lambda s: AuditEntry.select().where(AuditEntry.workspace_id == s.workspace_id),
         personal=None),
]

# Tables that are in no export, each with the reason.
NOT_EXPORTED: dict[type, str] = {
    LoginThrottle: "counters of failed sign-ins by address and client, kept briefly against "
                   "password guessing; they describe attempts, often by someone else",
    ChatEvent: "the order in which chat changes were delivered to open pages; every change "
               "it points to is in conversations, messages or attachments",
    EventCounter: "one number per workspace: the last chat event's sequence",
    Presence: "who has a page open right now, kept for seconds",
    ConversationFact: "the Reports page's figures per conversation (when it began, how soon it "
                      "was answered and resolved), derived from conversations and messages",
    ReportCursor: "how far the Reports page's figures have read the chat's events",
    AssignmentRule: "the workspace's round-robin switch and whose turn came last: a setting, "
                    "the assignments themselves are in conversations",
    OriginSeen: "which website origins loaded the widget, and how often: no person in it",
    SiteIdentity: "each site's identity secret, never exported, with counts of the identity "
                  "checks made with it: no person in it",
    InsightCount: "daily totals with no person in them",
    StripeEvent: "Stripe's notifications, kept only until applied; what they changed is in "
                 "billing_account and invoices",
    PolicyVersion: "the texts of our policies, the same for everyone",
    VaultCheck: "a check value of the encryption key: key material is never exported",
    WorkspaceKey: "the workspace's encryption key: key material is never exported",
    ExportRequest: "the exports themselves, removed with their file when it expires",
    DeletionRequest: "a deletion waiting out its 14 days, shown on the Privacy & data page; "
                     "it holds nothing the account does not",
}


# The restriction area's tables, found by name so that this list and theirs may change apart.
_restriction = {model.__name__: model for model in RESTRICTION_MODELS}
if "EmailObjection" in _restriction:
    _objection = _restriction["EmailObjection"]
    KINDS.append(Kind(
        "email_objections", "The kinds of e-mail this person's address asked not to receive.",
        _objection, ("id", "email", "kind", "created_at"),
        workspace=lambda s: _objection.select().where(_objection.email == s.email.lower()),
        personal=lambda s: _objection.select().where(_objection.email == s.email.lower())))
if "OutboundKind" in _restriction:
    NOT_EXPORTED[_restriction["OutboundKind"]] = (
        "the kind of each e-mail in the outbox (for its unsubscribe link): no person in it; the "
        "e-mails themselves are in emails")


def register(kind: Kind) -> None:
    """Add an area's kind of data (its table then counts as exported)."""
    if any(k.name == kind.name for k in KINDS):
        raise ValueError(f"two export kinds are named {kind.name!r}")
    KINDS.append(kind)


def kinds_for(scope: Scope) -> list[Kind]:
    return [k for k in KINDS if (k.personal if scope.personal else k.workspace) is not None]


MANIFEST_SCHEMA = {
    "title": "manifest", "description": "What this export is: whose data, when, and how many "
    "rows each file holds.", "type": "object", "additionalProperties": False,
    "required": ["schema_version", "scope", "workspace_id", "user_id", "created_at", "files"],
    "properties": {"schema_version": {"type": "integer"}, "scope": {"type": "string"},
                   "workspace_id": {"type": "integer"}, "user_id": {"type": "integer"},
                   "created_at": {"type": "string", "format": "date-time"},
                   "files": {"type": "object"}},
}


def schema(scope: Scope) -> dict:
    """The JSON Schema of every file in an export of this scope."""
    files = {"manifest.json": MANIFEST_SCHEMA}
    files.update({f"{k.name}.json": k.schema() for k in kinds_for(scope)})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Lumnar data export", "schema_version": SCHEMA_VERSION,
            "description": "Each key of `files` names a JSON file of this export and gives its "
                           "schema.", "files": files}
