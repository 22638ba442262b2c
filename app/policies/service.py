"""Policies: publishing a version (a material change needs 30 days' notice), telling every
account holder (e-mails in batches through the worker, a dashboard notice until acknowledged),
and reading versions for the public pages (current, upcoming, history, differences)."""

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask import current_app
from peewee import JOIN, SQL, IntegrityError, fn

from app import background
from app.accounts.models import User
from app.db import Prepared, database, utcnow
from app.errors import RuleError
from app.mail import service as mail
from app.policies import seed
from app.policies.models import PolicyAcknowledgement, PolicyNotice, PolicyVersion

log = logging.getLogger(__name__)

KINDS = PolicyVersion.KINDS
NOTICE_DAYS = 30  # a material change takes effect at least this long after it is published
FURTHEST_DAYS = 366  # and at most this far ahead (a typo in the year is refused)
BATCH = 200  # account holders per e-mail task
TEXT_MAX = 200_000
SUMMARY_MAX = 2_000
# The public page of each kind (the e-mails link to them, built without a request).
PAGES = {"privacy": "/privacy", "terms": "/terms", "cookies": "/cookies"}


def long_date(d) -> str:
    """29 December 2026 (no leading zero, on every platform)."""
    return f"{d.day} {d:%B %Y}"


# --- the first version -----------------------------------------------------------------------


def ensure_first_versions() -> bool:
    """Version 1 of the privacy policy, from the page that existed before versions, when no
    privacy version exists yet; True when it was made. One transaction, safe to call again
    and from two processes at once (the unique (kind, version) index keeps one). Called on
    first read; a migration may call it too."""
    if PolicyVersion.select().where(PolicyVersion.kind == "privacy").exists():
        return False
    config = current_app.config
    text = seed.FIRST_PRIVACY_TEXT.format(contact_email=config["CONTACT_EMAIL"],
                                          contact_url="/contact")
    now = utcnow()
    try:
        with database.atomic():
            PolicyVersion.create(kind="privacy", version=1, text=text,
                                 summary=seed.FIRST_PRIVACY_SUMMARY, material=False,
                                 announced=False, published_at=now, effective_at=now)
    except IntegrityError:
        return False  # another request made it first
    return True


# --- reading ---------------------------------------------------------------------------------


@dataclass
class History:
    """A kind's versions, newest first, with the one in effect and the one to come."""

    kind: str
    versions: list
    current: PolicyVersion | None
    upcoming: PolicyVersion | None

    @property
    def title(self) -> str:
        return KINDS[self.kind]

    def number(self, n: int) -> PolicyVersion | None:
        return next((v for v in self.versions if v.version == n), None)


def history(kind: str, now: datetime | None = None) -> History:
    if kind not in KINDS:
        raise LookupError(kind)
    if kind == "privacy":
        ensure_first_versions()
    now = now or utcnow()
    versions = list(PolicyVersion.select().where(PolicyVersion.kind == kind)
                    .order_by(PolicyVersion.version.desc()))
    # Versions take effect in the order of their numbers (publish() sees to it).
    current = next((v for v in versions if v.effective_at <= now), None)
    upcoming = next((v for v in reversed(versions) if v.effective_at > now), None)
    return History(kind, versions, current, upcoming)


def parse_number(raw) -> int | None:
    """A version number from a query string: a positive integer, else None."""
    raw = (raw or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        return None
    number = int(raw)
    return number if number > 0 else None


# --- publishing ------------------------------------------------------------------------------


def earliest_material_date(now: datetime) -> date:
    """The first date a material change published at `now` may take effect on (its day
    starts NOTICE_DAYS or more after `now`)."""
    earliest = now + timedelta(days=NOTICE_DAYS)
    day = earliest.date()
    return day if earliest.time() == time(0) else day + timedelta(days=1)


def effective_time(effective_on: date | None, now: datetime) -> datetime:
    """When a version with this effective date takes effect: at once for today (or no
    date), else at the start of that day (UTC)."""
    if effective_on is None or effective_on <= now.date():
        return now
    return datetime.combine(effective_on, time(0))


def publish(kind: str, text: str, summary: str, material: bool, effective_on: date | None,
            by: User | None, now: datetime | None = None) -> PolicyVersion:
    """Publish the next version of `kind`, then hand its announcement to the worker. Refused
    (RuleError beside the field, nothing saved): an unknown kind, an empty text or summary,
    a date in the past, a material change with less than NOTICE_DAYS' notice, or a date
    before the date an earlier version takes effect."""
    now = now or utcnow()
    text = (text or "").replace("\r\n", "\n").strip()
    summary = (summary or "").replace("\r\n", "\n").strip()
    if kind not in KINDS:
        raise RuleError("Choose a policy from the list.", field="kind")
    if not text:
        raise RuleError("Write the policy's text.", field="text")
    if len(text) > TEXT_MAX:
        raise RuleError(f"The text is longer than {TEXT_MAX:,} characters.", field="text")
    if not summary:
        raise RuleError("Say in a few sentences what changes: it is what people are told.",
                        field="summary")
    if len(summary) > SUMMARY_MAX:
        raise RuleError(f"Keep the summary under {SUMMARY_MAX:,} characters.", field="summary")
    if effective_on is not None and effective_on < now.date():
        raise RuleError("The effective date is in the past: a version cannot apply before "
                        "it is published.", field="effective_on")
    if effective_on is not None and effective_on > now.date() + timedelta(days=FURTHEST_DAYS):
        raise RuleError("Choose an effective date within a year.", field="effective_on")
    if material:
        earliest = earliest_material_date(now)
        if effective_on is None or effective_on < earliest:
            raise RuleError(
                f"A material change takes effect at least {NOTICE_DAYS} days after it is "
                f"published, so that everyone is told first: choose {long_date(earliest)} or "
                "later, or untick “Material change” if it changes nothing people agreed to.",
                field="effective_on")
    effective_at = effective_time(effective_on, now)
    if kind == "privacy":
        ensure_first_versions()
    try:
        with database.atomic():
            last = (PolicyVersion.select().where(PolicyVersion.kind == kind)
                    .order_by(PolicyVersion.version.desc()).first())
            if last is not None and last.effective_at > effective_at:
                raise RuleError(
                    f"Version {last.version} takes effect on {long_date(last.effective_at)}: "
                    "a later version cannot take effect before it.", field="effective_on")
            version = PolicyVersion.create(
                kind=kind, version=(last.version + 1) if last else 1, text=text,
                summary=summary, material=bool(material), announced=True, published_at=now,
                effective_at=effective_at, published_by=by.id if by else None)
    except IntegrityError:
        raise RuleError("Another version was published at the same moment; reload the page "
                        "and try again.", status=409) from None
    background.enqueue("policies.announce", version.id)
    return version


# --- telling people --------------------------------------------------------------------------


def recipient_batches(size: int | None = None) -> list[list[int]]:
    """The ids of every verified account holder, in batches of `size` (POLICY_BATCH in the
    app's config, for tests with a handful of people; BATCH otherwise)."""
    size = size or current_app.config.get("POLICY_BATCH", BATCH)
    ids = [row[0] for row in User.select(User.id).where(User.email_verified_at.is_null(False))
           .order_by(User.id).tuples()]
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def announce(version_id: int) -> int:
    """Queue one e-mail task per batch of account holders; the number of batches."""
    if not PolicyVersion.select().where((PolicyVersion.id == version_id)
                                        & PolicyVersion.announced).exists():
        return 0
    batches = recipient_batches()
    background.enqueue_many("policies.notify", [(version_id, batch) for batch in batches])
    return len(batches)


def subject_of(version: PolicyVersion, now: datetime | None = None) -> str:
    now = now or utcnow()
    name = version.title.lower() if version.kind != "terms" else "terms of service"
    if version.effective_at > now:
        return f"Lumnar's {name} changes on {long_date(version.effective_at)}"
    return f"Lumnar's {name} has changed"


def notify(version_id: int, user_ids: list[int]) -> int:
    """E-mail these account holders about the version (a legal notice: it goes to every
    verified account holder and carries no unsubscribe link); the number e-mailed. Each
    person is e-mailed once per version, however often the batch runs."""
    version = PolicyVersion.get_or_none(PolicyVersion.id == version_id)
    if version is None or not version.announced:
        return 0
    ids = [int(i) for i in user_ids]
    previous = (PolicyVersion.select(PolicyVersion.version)
                .where((PolicyVersion.kind == version.kind)
                       & (PolicyVersion.version < version.version))
                .order_by(PolicyVersion.version.desc()).first())
    page = PAGES[version.kind]
    context = dict(version=version, page_path=page,
                   diff_path=(f"{page}/diff?from={previous.version}&to={version.version}"
                              if previous else ""),
                   upcoming=version.effective_at > utcnow(), notice_days=NOTICE_DAYS)
    with database.atomic():
        told = {row[0] for row in PolicyNotice.select(PolicyNotice.user)
                .where((PolicyNotice.version == version_id) & PolicyNotice.user.in_(ids)).tuples()}
        people = [(uid, email) for uid, email in User.select(User.id, User.email).where(
            User.id.in_(ids) & User.email_verified_at.is_null(False)).order_by(User.id).tuples()
            if uid not in told]
        if not people:
            return 0
        emails = mail.store([email for _, email in people], "policy_notice",
                            subject_of(version), **context)
        PolicyNotice.insert_many(
            [dict(version=version_id, user=uid, email_id=e.id)
             for (uid, _), e in zip(people, emails, strict=True)]).execute()
    mail.hand_over([e.id for e in emails])
    return len(emails)


# The dashboard layout asks this on every full page, so it is one statement, built once: the
# announced versions that took effect (or will) after the person joined and that they have not
# acknowledged. It is cheap: announced versions are a handful of rows (a few a year), and the
# NOT EXISTS probe reads the unique (user_id, version_id) index of the acknowledgements, one
# index seek per such version; no table grows with the number of people on this path.
_NOTICES = Prepared(lambda user_id, joined_at: (
    PolicyVersion.select(PolicyVersion.id, PolicyVersion.kind, PolicyVersion.version,
                         PolicyVersion.summary, PolicyVersion.material,
                         PolicyVersion.effective_at)
    .where(PolicyVersion.announced
           & (PolicyVersion.effective_at > joined_at)
           & ~fn.EXISTS(PolicyAcknowledgement.select(SQL("1")).where(
               (PolicyAcknowledgement.user == user_id)
               & (PolicyAcknowledgement.version == PolicyVersion.id))))
    .order_by(PolicyVersion.id.desc()).limit(3).tuples()), arity=2)


@dataclass
class Notice:
    id: int
    kind: str
    version: int
    summary: str
    material: bool
    effective_at: datetime

    @property
    def title(self) -> str:
        return KINDS.get(self.kind, self.kind)

    @property
    def page_path(self) -> str:
        return PAGES[self.kind]

    @property
    def upcoming(self) -> bool:
        return self.effective_at > utcnow()


def notices_for(user: User) -> list[Notice]:
    """The policy notices this person has yet to acknowledge, newest first (at most 3)."""
    return [Notice(*row) for row in _NOTICES.rows(user.id, user.created_at)]


def acknowledge(user: User, version_ids: list[int]) -> int:
    """Record that this person read the notices of these versions; how many were new.
    Ids of versions that do not exist or were never announced are ignored."""
    ids = {int(i) for i in version_ids}
    if not ids:
        return 0
    with database.atomic():
        known = [row[0] for row in PolicyVersion.select(PolicyVersion.id)
                 .join(PolicyAcknowledgement, JOIN.LEFT_OUTER,
                       on=((PolicyAcknowledgement.version == PolicyVersion.id)
                           & (PolicyAcknowledgement.user == user.id)))
                 .where(PolicyVersion.id.in_(ids) & PolicyVersion.announced
                        & PolicyAcknowledgement.id.is_null()).tuples()]
        if known:
            PolicyAcknowledgement.insert_many(
                [dict(user=user.id, version=v) for v in known]).on_conflict_ignore().execute()
    return len(known)
