"""Objection to e-mail: which of our e-mails are essential and which a person may stop, the
one-click unsubscribe links (RFC 8058) on the ones they may stop, and the check the outbox
makes before it stores one. Lumnar sends no marketing e-mail at all: every e-mail below is
about an account, a workspace or a conversation someone is part of."""

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from app.accounts.models import Workspace
from app.db import database
from app.privacy.restriction.models import EmailObjection, OutboundKind


@dataclass(frozen=True)
class MailKind:
    template: str  # templates/mail/<template>.txt and .html
    label: str  # what the person reads on the unsubscribe page and Privacy & data
    essential: bool
    why: str
    # For a non-essential e-mail about one workspace: its id, read from the e-mail's context,
    # so that a workspace whose processing is restricted sends none of them.
    workspace_of: Callable[[dict], int | None] | None = None


MAIL_KINDS = {k.template: k for k in [
    # Essential: the account cannot be used safely or lawfully without them, or the person
    # asked for this very e-mail. No unsubscribe header; restriction does not stop them.
    MailKind("verify", "Confirm your e-mail address", True, "asked for by signing up"),
    MailKind("reset", "Reset your password", True, "asked for on the forgotten-password page"),
    MailKind("password_changed", "Your password was changed", True, "security of the account"),
    MailKind("email_change_confirm", "Confirm a new e-mail address", True,
             "asked for in Settings"),
    MailKind("email_change_notice", "Your e-mail address is being changed", True,
             "security of the account"),
    MailKind("signup_exists", "Someone tried to sign up with your address", True,
             "security of the account"),
    MailKind("login_attack", "Someone is trying to log in", True, "security of the account"),
    MailKind("security_alert", "Security alerts (new sign-ins, credentials, staff access)", True,
             "security of the account and of the workspace's data"),
    MailKind("invite", "An invitation to a workspace", True,
             "sent once, because a member of that workspace asked us to"),
    MailKind("policy_notice", "Changes to our terms and policies", True,
             "we must tell you before a change applies"),
    MailKind("payment_failed", "A payment failed", True, "the contract: your plan depends on it"),
    MailKind("request_received", "We received your request", True, "the answer to your request"),
    MailKind("request_reply", "The answer to your request", True, "the answer to your request"),
    MailKind("request_extended", "Your request needs more time", True,
             "the law asks us to say so"),
    MailKind("request_digest", "Requests waiting for an answer (Lumnar staff)", True,
             "staff work: requests have legal deadlines"),
    MailKind("transcript", "A copy of your conversation", True,
             "sent once, because you asked for it in the chat"),
    MailKind("visitor_reply", "An answer to your chat message", True,
             "the conversation you started: you left your address for the answer"),
    MailKind("deletion_scheduled", "Your workspace or account will be deleted", True,
             "asked for on the Privacy & data page: the way to cancel it"),
    MailKind("deletion_reminder", "A deletion happens in two days", True,
             "the last chance to cancel a deletion"),
    MailKind("deletion_done", "Your workspace or account was deleted", True,
             "the confirmation that what you asked was done"),
    # Non-essential: useful, never needed. Each carries List-Unsubscribe and
    # List-Unsubscribe-Post, and none goes while the workspace restricts processing.
    MailKind("away_notice", "New chat message alerts", False,
             "tells the team about a message that came while nobody was online",
             lambda ctx: ctx["site"].workspace_id),
    MailKind("mention", "Mentions in teammates' private notes", False,
             "tells a member that a note in a conversation names them while they are away",
             lambda ctx: ctx["site"].workspace_id),
    MailKind("automation_failed", "Automation failure notices", False,
             "tells the owners that an automation failed; the runs page shows it too",
             lambda ctx: ctx["automation"].workspace_id),
    MailKind("automation_message", "E-mails sent by a workspace's automations", False,
             "written by a workspace's automation; automations do not run while the "
             "workspace restricts processing"),
]}

NON_ESSENTIAL = [k for k in MAIL_KINDS.values() if not k.essential]


def kind_of(template: str) -> MailKind | None:
    return MAIL_KINDS.get(template)


# --- the outbox's check ------------------------------------------------------------------------


def allowed_recipients(template: str, recipients: list[str], context: dict) -> list[str]:
    """Who may get this e-mail: everyone for an essential one; for a non-essential one, nobody
    while its workspace restricts processing, and never an address that objected to its kind."""
    kind = kind_of(template)
    if kind is None or kind.essential or not recipients:
        return list(recipients)
    if kind.workspace_of is not None:
        workspace_id = kind.workspace_of(context)
        if workspace_id is not None and Workspace.select().where(
                (Workspace.id == workspace_id)
                & (Workspace.processing_restricted == True)).exists():  # noqa: E712
            return []
    objected = {o.email for o in EmailObjection.select(EmailObjection.email).where(
        (EmailObjection.kind == template)
        & EmailObjection.email.in_([r.strip().lower() for r in recipients]))}
    return [r for r in recipients if r.strip().lower() not in objected]


def mark(template: str, email_ids: list[int]) -> None:
    """Remember the kind of each stored non-essential e-mail, for its headers at send time."""
    kind = kind_of(template)
    if kind is not None and not kind.essential and email_ids:
        OutboundKind.insert_many([{"email": i, "kind": template} for i in email_ids]).execute()


def headers(email_id: int, to: str) -> dict[str, str]:
    """The RFC 8058 headers of a stored e-mail: none for an essential one."""
    row = OutboundKind.get_or_none(OutboundKind.email == email_id)
    if row is None:
        return {}
    return {"List-Unsubscribe": f"<{unsubscribe_url(to, row.kind)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


# --- links -------------------------------------------------------------------------------------


def _fernet() -> Fernet:
    # Encrypted as well as signed, so that the address never shows in a URL (in a mail
    # provider's or a proxy's logs). Derived from the app's secret key; no expiry, because an
    # unsubscribe link must keep working in old e-mails.
    secret = current_app.config["SECRET_KEY"].encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"lumnar-unsubscribe:" + secret).digest()))


def token_for(email: str, kind: str) -> str:
    payload = json.dumps([email.strip().lower(), kind], separators=(",", ":")).encode()
    return _fernet().encrypt(payload).decode()


def read_token(token: str) -> tuple[str, MailKind] | None:
    """(address, kind) of a genuine link, else None."""
    if not token or len(token) > 1000:
        return None
    try:
        email, template = json.loads(_fernet().decrypt(token.encode()))
    except (InvalidToken, ValueError, TypeError):
        return None
    kind = kind_of(template)
    if kind is None or kind.essential or not isinstance(email, str):
        return None
    return email, kind


def unsubscribe_url(email: str, kind: str) -> str:
    return f"{current_app.config['BASE_URL']}/unsubscribe/{token_for(email, kind)}"


# --- objecting ---------------------------------------------------------------------------------


def object_to(email: str, template: str) -> None:
    """No more e-mails of this kind to this address (a second time changes nothing)."""
    kind = kind_of(template)
    if kind is None or kind.essential:
        raise ValueError(f"{template!r} is not an e-mail one can stop")
    with database.atomic():
        EmailObjection.insert(email=email.strip().lower(), kind=template).on_conflict_ignore().execute()


def withdraw(email: str, template: str) -> None:
    EmailObjection.delete().where((EmailObjection.email == email.strip().lower())
                                  & (EmailObjection.kind == template)).execute()


def objections_of(email: str) -> set[str]:
    return {o.kind for o in EmailObjection.select(EmailObjection.kind).where(
        EmailObjection.email == email.strip().lower())}


def forget_kinds(email_ids: list[int]) -> None:
    """An e-mail's kind record goes with it (the outbox purge, a workspace's deletion)."""
    OutboundKind.delete().where(OutboundKind.email.in_(email_ids)).execute()
