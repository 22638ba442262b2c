"""The contact channel's rules: a request is received with a reference and a due date one
calendar month out, acknowledged by e-mail, answered by staff in a thread that is e-mailed to
the requester, extended at most once by two months with the reason sent, and summed up for
staff each morning. Also the text of /.well-known/security.txt."""

import calendar
import re
import secrets
from datetime import date, datetime, timedelta

from flask import current_app
from peewee import Case, IntegrityError

from app.accounts.models import User
from app.contact.models import ContactRequest, RequestMessage
from app.db import database, utcnow
from app.errors import RuleError
from app.mail import service as mail

EXTENSION_MONTHS = 2
NAME_MAX, EMAIL_MAX, MESSAGE_MAX, REPLY_MAX, REASON_MAX = 120, 254, 5000, 10_000, 2000
QUEUE_SHOWN = 200
# security.txt must say when to stop trusting it (RFC 9116 2.5.5: less than a year ahead);
# computed on each answer, so it never goes stale.
SECURITY_TXT_VALID = timedelta(days=180)
LOOKS_LIKE_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- calendar -------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` later; a day the target month lacks becomes its last
    (31 January + 1 month is 28 February, or 29 in a leap year)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def due_date(received: datetime | date) -> date:
    """When an answer is due: one calendar month after the day the request arrived (UTC)."""
    day = received.date() if isinstance(received, datetime) else received
    return add_months(day, 1)


def today() -> date:
    return utcnow().date()


# --- receiving ------------------------------------------------------------------------------


def _check(value: str, field: str, limit: int, empty: str, long: str) -> str:
    value = (value or "").replace("\r\n", "\n").strip()
    if not value:
        raise RuleError(empty, field=field)
    if len(value) > limit:
        raise RuleError(long, field=field)
    return value


def _new_reference() -> str:
    return "LR-" + secrets.token_hex(4).upper()


def submit(name: str, email: str, topic: str, message: str, *, kind: str = "",
           workspace_id: int | None = None, user_id: int | None = None,
           received_at: datetime | None = None) -> ContactRequest:
    """Keep a request, due one calendar month after it arrived, then acknowledge it by e-mail."""
    name = _check(name, "name", NAME_MAX, "Enter a name.", f"Use at most {NAME_MAX} characters.")
    email = _check(email, "email", EMAIL_MAX, "Enter your e-mail address.",
                   "That address is too long.").lower()
    if not LOOKS_LIKE_EMAIL.match(email):
        raise RuleError("Enter a valid e-mail address, like name@example.com.", field="email")
    if topic not in ContactRequest.TOPICS:
        raise RuleError("Choose what your message is about.", field="topic")
    if kind and kind not in ContactRequest.KINDS:
        raise RuleError("Choose what you are asking for.", field="kind")
    message = _check(message, "message", MESSAGE_MAX, "Write your message.",
                     f"Use at most {MESSAGE_MAX} characters.")
    received_at = received_at or utcnow()
    for _attempt in range(5):  # a clash of random references is rare; try another
        try:
            with database.atomic():
                request = ContactRequest.create(
                    reference=_new_reference(), topic=topic, kind=kind, name=name, email=email,
                    message=message, workspace=workspace_id, filed_by=user_id,
                    received_at=received_at, updated_at=received_at, due_on=due_date(received_at))
            break
        except IntegrityError:
            continue
    else:
        raise RuleError("The request could not be saved. Try again.")
    # Only what we know ourselves (reference, topic, dates): a form anyone can fill must not
    # make us send words of a stranger's choosing to an address of their choosing.
    mail.send(request.email, "request_received",
              f"We received your {request.topic_label.lower()} ({request.reference})",
              request=request)
    return request


def file_privacy_request(user: User, workspace_id: int, kind: str, details: str) -> ContactRequest:
    """An owner's privacy request from the dashboard, in the workspace's name."""
    if kind not in ContactRequest.KINDS:
        raise RuleError("Choose what you are asking for.", field="kind")
    return submit(user.name, user.email, ContactRequest.PRIVACY, details, kind=kind,
                  workspace_id=workspace_id, user_id=user.id)


# --- staff ----------------------------------------------------------------------------------


def queue(show_all: bool = False, on: date | None = None) -> list[ContactRequest]:
    """The staff queue: overdue requests first, then the others waiting for us by due date,
    then (with `show_all`) the answered and closed ones."""
    on = on or today()
    waiting = ContactRequest.status.in_(ContactRequest.OPEN)
    overdue = Case(None, ((waiting & (ContactRequest.due_on < on), 0),), 1)
    query = ContactRequest.select()
    if not show_all:
        query = query.where(waiting)
    return list(query.order_by(overdue, Case(None, ((waiting, 0),), 1), ContactRequest.due_on,
                               ContactRequest.id).limit(QUEUE_SHOWN))


def _touch(request: ContactRequest, **changes) -> None:
    changes["updated_at"] = utcnow()
    for field, value in changes.items():
        setattr(request, field, value)
    ContactRequest.update(**changes).where(ContactRequest.id == request.id).execute()


def reply(request: ContactRequest, staff: User, body: str) -> RequestMessage:
    """Keep a staff answer in the thread and e-mail it to the requester; the request counts as
    answered (unless already closed)."""
    body = _check(body, "body", REPLY_MAX, "Write the reply.",
                  f"Use at most {REPLY_MAX} characters.")
    with database.atomic():
        entry = RequestMessage.create(request=request, kind=RequestMessage.REPLY, staff=staff.id,
                                      author_name=staff.name, body=body)
        if request.status != ContactRequest.CLOSED:
            _touch(request, status=ContactRequest.ANSWERED)
    mail.send(request.email, "request_reply", f"Re: your request {request.reference}",
              request=request, reply=entry)
    return entry


def set_status(request: ContactRequest, status: str) -> None:
    if status not in ContactRequest.STATUSES:
        raise RuleError("Choose a status from the list.", field="status")
    _touch(request, status=status)


def extend(request: ContactRequest, staff: User, reason: str) -> RequestMessage:
    """Move the due date two months later, once, telling the requester why."""
    reason = _check(reason, "reason", REASON_MAX, "Say why more time is needed: the requester "
                    "is told.", f"Use at most {REASON_MAX} characters.")
    if request.extended_at is not None:
        raise RuleError("This request has been extended once already; it cannot be extended "
                        "again.", field="reason", status=409)
    with database.atomic():
        # Only the first extension gets through, even with two staff pressing at once.
        changed = (ContactRequest.update(due_on=add_months(request.due_on, EXTENSION_MONTHS),
                                         extended_at=utcnow(), extension_reason=reason,
                                         updated_at=utcnow())
                   .where((ContactRequest.id == request.id)
                          & ContactRequest.extended_at.is_null()).execute())
        if not changed:
            raise RuleError("This request has been extended once already; it cannot be "
                            "extended again.", field="reason", status=409)
        entry = RequestMessage.create(request=request, kind=RequestMessage.EXTENSION,
                                      staff=staff.id, author_name=staff.name, body=reason)
    request = ContactRequest.get_by_id(request.id)
    mail.send(request.email, "request_extended",
              f"More time for your request {request.reference}", request=request, reason=reason)
    return entry


def thread(request: ContactRequest) -> list[RequestMessage]:
    return list(request.thread.order_by(RequestMessage.created_at, RequestMessage.id))


# --- the daily digest -----------------------------------------------------------------------


def send_digest(on: date | None = None) -> int:
    """E-mail every staff member the requests waiting for us, overdue first. Nothing is sent
    when none waits (or nobody is staff). Returns how many e-mails were queued."""
    on = on or today()
    waiting = queue(on=on)
    staff = [u.email for u in User.select(User.email).where(User.is_staff == True)]  # noqa: E712
    if not waiting or not staff:
        return 0
    overdue = sum(1 for r in waiting if r.overdue_days(on))
    subject = f"Requests waiting: {len(waiting)} open" + (f", {overdue} overdue" if overdue else "")
    emails = mail.store(staff, "request_digest", subject, requests=waiting, today=on,
                        overdue=overdue)
    mail.hand_over([e.id for e in emails])
    return len(emails)


# --- security.txt ---------------------------------------------------------------------------


def security_txt(now: datetime | None = None) -> str:
    """/.well-known/security.txt (RFC 9116): where to report a vulnerability."""
    cfg = current_app.config
    base = str(cfg["BASE_URL"]).rstrip("/")
    expires = ((now or utcnow()) + SECURITY_TXT_VALID).replace(microsecond=0)
    return "".join((
        f"Contact: mailto:{cfg['CONTACT_EMAIL']}\n",
        f"Contact: {base}/contact\n",
        f"Expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}\n",
        "Preferred-Languages: en\n",
        f"Canonical: {base}/.well-known/security.txt\n",
    ))
