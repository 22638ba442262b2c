"""Retention as one table of truth: what Lumnar keeps, how long and why, each row with the
purge that makes it so. The nightly task (jobs/retention.py) runs the rows it owns, the public
page /privacy/retention is generated from the same rows, and a data-inventory test fails when
a table holding personal data has no row. Purges delete in batches of a few hundred rows (each
batch its own short transaction, so chat keeps answering) and report counts only."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app

from app.accounts.models import Invitation, LoginThrottle, Membership, User, UserSession, Workspace
from app.db import database, delete_in_batches, utcnow
from app.mail.models import OutboundEmail
from app.privacy.restriction import objection
from app.staff.models import AuditEntry

log = logging.getLogger(__name__)

BATCH = 300
THIS_JOB = "jobs/retention.py run_retention (nightly)"

UNVERIFIED_DAYS = 7
ENDED_SESSION_DAYS = 30
THROTTLE_DAYS = 30
INVITATION_DAYS = 14
OUTBOX_DAYS = 30
ACCESS_LOG_DAYS = 730


@dataclass(frozen=True)
class Row:
    key: str
    what: str  # in plain words, as the public page says it
    kept: str  # how long
    why: str
    tables: tuple[str, ...]  # every table whose rows this row governs
    purge: Callable[[], int] | None = None  # deletes what is past its time; how many went
    runs_in: str = THIS_JOB  # which periodic task calls `purge`
    # A period read from a setting at the time the page is shown: `kept` holds "{}" for it.
    setting: Callable[[], str] | None = field(default=None, compare=False)

    @property
    def kept_text(self) -> str:
        return self.kept.format(self.setting()) if self.setting else self.kept


# --- purges this table adds --------------------------------------------------------------------


def _delete_in_batches(model, where) -> int:
    return delete_in_batches(model, where, BATCH)


def purge_unverified_signups(now: datetime | None = None) -> int:
    """Accounts never confirmed within UNVERIFIED_DAYS go, with the workspace made at sign-up
    when nobody else is in it (an unconfirmed account cannot log in, so it holds nothing)."""
    cutoff = (now or utcnow()) - timedelta(days=UNVERIFIED_DAYS)
    deleted = 0
    while True:
        users = [u.id for u in User.select(User.id).where(
            User.email_verified_at.is_null() & (User.created_at < cutoff)
            & (User.is_staff == False)).limit(BATCH)]  # noqa: E712
        if not users:
            return deleted
        others = Membership.select(Membership.workspace).where(Membership.user.not_in(users))
        alone = [m.workspace_id for m in Membership.select(Membership.workspace).where(
            Membership.user.in_(users) & Membership.workspace.not_in(others))]
        with database.atomic():
            if alone:
                Workspace.delete().where(Workspace.id.in_(alone)).execute()
            deleted += User.delete().where(User.id.in_(users)).execute()


def purge_ended_sessions(now: datetime | None = None) -> int:
    """Session rows (browser kind, times) ENDED_SESSION_DAYS after their session could no
    longer be used: idle past the idle limit, or past the absolute lifetime."""
    now = now or utcnow()
    idle, lifetime = current_app.config["SESSION_IDLE"], current_app.config["SESSION_MAX"]
    grace = timedelta(days=ENDED_SESSION_DAYS)
    return _delete_in_batches(UserSession, (UserSession.last_seen_at < now - idle - grace)
                              | (UserSession.created_at < now - lifetime - grace))


def purge_login_throttles(now: datetime | None = None) -> int:
    """Failed log-in counters (address, client address) THROTTLE_DAYS after the last failure,
    once no lock they hold is still running."""
    now = now or utcnow()
    cutoff = now - timedelta(days=THROTTLE_DAYS)
    return _delete_in_batches(LoginThrottle, (
        (LoginThrottle.last_failure_at.is_null() | (LoginThrottle.last_failure_at < cutoff))
        & (LoginThrottle.locked_until.is_null() | (LoginThrottle.locked_until < now))
        & (LoginThrottle.not_before.is_null() | (LoginThrottle.not_before < now))))


def purge_old_invitations(now: datetime | None = None) -> int:
    """Invitations INVITATION_DAYS after they were sent, once accepted, withdrawn or expired
    (an accepted one lives on as the membership)."""
    now = now or utcnow()
    return _delete_in_batches(Invitation, (Invitation.created_at < now - timedelta(days=INVITATION_DAYS))
                              & (Invitation.accepted_at.is_null(False)
                                 | Invitation.revoked_at.is_null(False)
                                 | (Invitation.expires_at < now)))


def purge_outbox(now: datetime | None = None) -> int:
    """E-mails (address, subject, words) OUTBOX_DAYS after they were written, sent or not:
    one still unsent by then never will be (the sweep gives up long before)."""
    cutoff = (now or utcnow()) - timedelta(days=OUTBOX_DAYS)
    return delete_in_batches(OutboundEmail, (OutboundEmail.created_at < cutoff)
                             & (OutboundEmail.status != OutboundEmail.SENDING), BATCH,
                             objection.forget_kinds)


def purge_access_log(now: datetime | None = None) -> int:
    cutoff = (now or utcnow()) - timedelta(days=ACCESS_LOG_DAYS)
    return _delete_in_batches(AuditEntry, AuditEntry.created_at < cutoff)


# --- the existing purges, called from their rows -----------------------------------------------


def _chat() -> int:
    from app.chat import retention

    return retention.purge_expired()


def _chat_signals() -> int:
    from app.chat import retention

    return retention.purge_stale_events()


def _run_logs() -> int:
    from app.automations import service

    return service.purge_run_logs()


def _billing() -> int:
    from app.billing import service

    return service.purge_expired_records()


def _insight() -> int:
    from app.insight import service

    return service.purge_old()


def _exports() -> int:
    from app.privacy.export import service

    return service.purge_expired()


def _deletions() -> int:
    from app.privacy.deletion import service

    return service.run_due()


def _billing_years() -> str:
    return f"{current_app.config.get('BILLING_RETENTION_YEARS', 10)} years"


# --- the table ---------------------------------------------------------------------------------

RETENTION: list[Row] = [
    Row("chat", "Conversations with their messages, attachments and visitors' details",
        "each site's own setting, 180 days by default, after the conversation's last message",
        "to answer visitors and keep the history the workspace's team needs",
        ("conversation", "message", "attachment", "visitor", "chat_event",
         "widget_verified_visitor", "note_mention", "report_fact", "conversation_rating"), _chat,
        "jobs/chat.py purge_old_conversations (nightly)"),
    Row("chat-signals", "Typing and read signals, and who is online",
        "a day (online status: 5 minutes)", "to show them live and after a reconnect",
        ("chat_event", "presence"), _chat_signals,
        "jobs/chat.py purge_stale_events (every 30 minutes)"),
    Row("run-logs", "Automation run logs (what a run sent and received)",
        "the workspace's setting, 14 days by default", "to show the team what its automations did",
        ("automation_run",), _run_logs, "jobs/automations.py purge_run_logs (nightly)"),
    Row("workspace", "The workspace's own set-up: sites, saved replies, labels, automations, "
        "credentials (encrypted), team members",
        "as long as the workspace exists", "it is the service the workspace uses",
        ("workspace", "site", "saved_reply", "automation", "credential", "workspace_key",
         "widget_origin_seen", "membership", "event_counter", "vault_check", "site_identity",
         "label", "site_language", "site_text"),
        None,
        "deleted with the workspace"),
    Row("accounts", "Accounts: name, e-mail address, password hash, browsers signed in from "
        "(kind and system only), choices made in Settings",
        "as long as the account exists", "to sign you in and protect the account",
        ("user", "known_browser", "insight_objection", "policy_acknowledgement",
         "alert_settings"), None,
        "deleted with the account"),
    Row("exports", "Data exports (the ZIP files)", "7 days", "for you to download them",
        ("export_request",), _exports, "jobs/privacy.py purge_exports (hourly)"),
    Row("unverified", "Sign-ups never confirmed by e-mail", f"{UNVERIFIED_DAYS} days",
        "an address nobody confirmed may not be its owner's", ("user", "workspace"),
        purge_unverified_signups),
    Row("sessions", "Ended sign-in sessions (browser kind and times)",
        f"{ENDED_SESSION_DAYS} days after the session ended", "to list and end your sessions",
        ("user_session",), purge_ended_sessions),
    Row("throttles", "Failed log-in counters (address and the client's network address)",
        f"{THROTTLE_DAYS} days after the last failure", "to slow down password guessing",
        ("login_failure",), purge_login_throttles),
    Row("invitations", "Invitations to a workspace (the invited address)",
        f"{INVITATION_DAYS} days after they were sent, once accepted, withdrawn or expired",
        "to let the invited person join", ("invitation",), purge_old_invitations),
    Row("outbox", "E-mails we sent (address, subject and words)", f"{OUTBOX_DAYS} days",
        "to send them again when delivery fails", ("outbound_email", "outbound_email_kind"),
        purge_outbox),
    Row("objections", "Addresses that stopped a kind of e-mail",
        "as long as the objection stands", "to keep honouring it", ("email_objection",), None,
        "kept on purpose"),
    Row("deletion", "Workspaces and accounts whose deletion was asked for (and the address "
        "to tell when it is done)", "14 days, then everything in them is deleted but billing "
        "records and the access log without names",
        "so that a mistaken or forced deletion can be cancelled", ("deletion_request",),
        _deletions, "jobs/deletion.py carry_out_deletions (hourly)"),
    Row("access-log", "The access log (who looked at or changed a workspace's data, and when)",
        "2 years", "so that the workspace can check who accessed its data",
        ("audit_entry",), purge_access_log),
    Row("requests", "Requests sent from the contact page, with our answers",
        "as long as the workspace or requester may need the record", "to answer them and "
        "prove that we did", ("contact_request", "contact_request_message"), None,
        "not yet purged (no period set)"),
    Row("billing", "Invoices and billing details (name, address, country; never card numbers)",
        "{} after the workspace is deleted", "the law on accounting records",
        ("billing_account", "billing_invoice", "billing_event"), _billing,
        "jobs/billing.py purge_billing_records (nightly)", _billing_years),
    Row("policies", "Our published policies and who was told about a change",
        "for good", "the record of what we promised, and when", ("policy_version", "policy_notice"), None,
        "kept on purpose"),
    Row("usage", "Usage totals (counts of page and feature use per day, nobody named)",
        "400 days", "to see which parts of Lumnar are used", ("insight_count",), _insight,
        "jobs/insight.py purge_old_counts (nightly)"),
    Row("backups", "Backup copies of the database", "up to 35 days: deleted data survives in "
        "them that long. Credentials in an old copy cannot be read once their workspace's key "
        "is destroyed", "to recover from a failure", (), None,
        "jobs/backups.py nightly_backup (7 daily, then 4 weekly copies)"),
    Row("web-logs", "Web request logs",
        "not stored by Lumnar: the web server prints request lines (with the client's network "
        "address) to its output, which the operator's system keeps as it is set up to",
        "to run the service", (), None, "the operator's log set-up"),
]


def mine() -> list[Row]:
    """The rows whose purge the nightly task of this table runs."""
    return [r for r in RETENTION if r.purge is not None and r.runs_in == THIS_JOB]


def run(rows: list[Row] | None = None) -> dict[str, int]:
    """Run each row's purge; {row key: rows deleted}. Counts only are logged."""
    counts = {}
    for row in mine() if rows is None else rows:
        counts[row.key] = row.purge()
        log.info("retention %s: %d deleted", row.key, counts[row.key])
    return counts


def covered_tables() -> set[str]:
    return {table for row in RETENTION for table in row.tables}
