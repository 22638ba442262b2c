"""Queue e-mails in the outbox and deliver them over SMTP."""

import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

from flask import current_app, render_template

from app import background
from app.db import database, utcnow
from app.mail.models import OutboundEmail
from app.privacy.restriction import objection

# A row claimed by a worker that died mid-send is free again after this long.
CLAIM_TIMEOUT = timedelta(minutes=10)


def send(to: str, template: str, subject: str, **context) -> OutboundEmail | None:
    """Render `mail/<template>.txt` and `.html`, store the e-mail, then ask the worker to send it.

    Call it after your own transaction has committed: the worker reads the row from another
    connection, and SQLite lets only one writer in at a time. A change that must commit
    together with its e-mail uses store() inside its transaction, then hand_over().
    """
    if database.in_transaction():
        raise RuntimeError("queue e-mail after the transaction commits")
    emails = store([to], template, subject, **context)
    if not emails:
        return None  # a non-essential e-mail its address objected to (see store)
    hand_over([emails[0].id])
    return emails[0]


def store(recipients: list[str], template: str, subject: str, **context) -> list[OutboundEmail]:
    """Render `mail/<template>` once and put one e-mail per recipient in the outbox.

    Works inside the caller's transaction, so that a change which says "the e-mail went" (a
    notice marked sent) commits or rolls back with the e-mails themselves. A stored e-mail
    will be sent: hand_over() asks the worker at once, and sweep_outbox finds any whose
    hand-over was lost (a crash right after the commit).

    A non-essential e-mail (app/privacy/restriction/objection.py says which) goes to nobody
    who objected to its kind, nor to anyone while its workspace restricts processing; it is
    sent with one-click unsubscribe headers. The list of e-mails stored may then be shorter.
    """
    recipients = objection.allowed_recipients(template, recipients, context)
    if not recipients:
        return []
    context.setdefault("base_url", current_app.config["BASE_URL"])
    text_body = render_template(f"mail/{template}.txt", **context)
    html_body = render_template(f"mail/{template}.html", subject=subject, **context)
    workspace_id, conversation_id = about(context)
    with database.atomic():
        emails = [OutboundEmail.create(to=to, subject=subject, text_body=text_body,
                                       html_body=html_body, workspace_id=workspace_id,
                                       conversation_id=conversation_id) for to in recipients]
        objection.mark(template, [e.id for e in emails])
    return emails


def about(context: dict) -> tuple[int | None, int | None]:
    """(workspace id, conversation id) an e-mail is about, read from what its template is
    given, so that deleting either finds the e-mails that mention it (app/privacy/deletion)."""
    conversation = context.get("conversation") or getattr(context.get("message"), "conversation", None)
    conversation_id = getattr(conversation, "id", None)
    workspace_id = context.get("workspace_id") or getattr(conversation, "workspace_id", None)
    for key in ("workspace", "site", "automation"):
        if workspace_id is None and context.get(key) is not None:
            found = context[key]
            workspace_id = found.id if key == "workspace" else getattr(found, "workspace_id", None)
    return workspace_id, conversation_id


def hand_over(email_ids: list[int]) -> None:
    """Ask the worker to deliver these stored e-mails. After the commit: Huey's queue is
    written through a connection of its own, which would wait for this one's write lock."""
    if database.in_transaction():
        raise RuntimeError("hand e-mail over after the transaction commits")
    for email_id in email_ids:
        background.enqueue("mail.deliver", email_id)


def _claim(email_id: int) -> bool:
    now = utcnow()
    claimable = (OutboundEmail.status == OutboundEmail.QUEUED) | (
        (OutboundEmail.status == OutboundEmail.SENDING)
        & (OutboundEmail.claimed_at < now - CLAIM_TIMEOUT)
    )
    return bool(
        OutboundEmail.update(status=OutboundEmail.SENDING, claimed_at=now)
        .where((OutboundEmail.id == email_id) & claimable)
        .execute()
    )


def deliver(email_id: int) -> None:
    """Send one queued e-mail. Raises on SMTP failure so that Huey retries with backoff."""
    url = current_app.config["SMTP_URL"]
    if not url:
        return  # no SMTP configured: the e-mail waits in the outbox (dev outbox page)
    if not _claim(email_id):
        return  # already sent, or another worker has it
    email = OutboundEmail.get_by_id(email_id)
    try:
        _smtp_send(url, current_app.config["MAIL_FROM"], email)
    except Exception as exc:
        OutboundEmail.update(
            status=OutboundEmail.QUEUED,
            attempts=OutboundEmail.attempts + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:500],
        ).where(OutboundEmail.id == email_id).execute()
        raise
    OutboundEmail.update(
        status=OutboundEmail.SENT, sent_at=utcnow(), attempts=OutboundEmail.attempts + 1,
        last_error="",
    ).where(OutboundEmail.id == email_id).execute()


def stalled_ids(limit: int = 200) -> list[int]:
    """Queued e-mails that should have gone by now (Huey's retries ran out, or a worker died)."""
    if not current_app.config["SMTP_URL"]:
        return []
    cutoff = utcnow() - CLAIM_TIMEOUT
    rows = (
        OutboundEmail.select(OutboundEmail.id)
        .where(
            ((OutboundEmail.status == OutboundEmail.QUEUED) & (OutboundEmail.created_at < cutoff))
            | ((OutboundEmail.status == OutboundEmail.SENDING) & (OutboundEmail.claimed_at < cutoff))
        )
        .order_by(OutboundEmail.id)
        .limit(limit)
    )
    return [row.id for row in rows]


def build_message(sender: str, email: OutboundEmail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Message-ID"] = make_msgid(domain="lumnar")
    for name, value in objection.headers(email.id, email.to).items():  # RFC 8058
        msg[name] = value
    msg.set_content(email.text_body)
    msg.add_alternative(email.html_body, subtype="html")
    return msg


def _smtp_send(url: str, sender: str, email: OutboundEmail) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("smtp", "smtps", "smtp+starttls"):
        raise ValueError("LUMNAR_SMTP_URL must start with smtp://, smtps:// or smtp+starttls://")
    port = parts.port or {"smtp": 25, "smtps": 465, "smtp+starttls": 587}[scheme]
    cls = smtplib.SMTP_SSL if scheme == "smtps" else smtplib.SMTP
    kwargs = {"context": ssl.create_default_context()} if scheme == "smtps" else {}
    with cls(parts.hostname, port, timeout=20, **kwargs) as smtp:
        if scheme == "smtp+starttls":
            smtp.starttls(context=ssl.create_default_context())
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(build_message(sender, email))
