"""Identity verification: a customer whose own website has signed-in users tells the widget who
the user is (their id, name and e-mail) with an HMAC-SHA256 of the id made with the site's
identity secret. A verified user is the same visitor in every browser (so they find their
conversation on any device) and is marked verified for the team; a claim whose signature is
wrong or missing is ignored (the visitor stays anonymous) and counted for the site's page.

The secret is kept as it is (checking an HMAC needs it), in a table of its own, shown once
when it is made or replaced, and never again: not on the site's page, in an export or a log.
Only the id is signed: the name and e-mail are taken as given, like a visitor's own words."""

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from peewee import (
    EXCLUDED,
    Case,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    IntegrityError,
)

from app.chat import service as chat_service
from app.db import BaseModel, database, utcnow
from app.widget import service as widget_service
from app.widget.models import Site, Visitor

SECRET_PREFIX = "lmid_"
ID_MAX = 200  # characters of a site's user id; a longer claim is refused
NAME_MAX = 120  # as Visitor.name
EMAIL_MAX = 254  # as Visitor.email


def new_secret() -> str:
    # The prefix lets secret scanners (and people) tell what leaked.
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class SiteIdentity(BaseModel):
    """A site's identity secret (empty until the owner makes one) and, since it was made or
    last replaced, how many claims were verified and how many refused."""

    site = ForeignKeyField(Site, unique=True, on_delete="CASCADE")
    secret = CharField(max_length=80, default="")
    created_at = DateTimeField(default=utcnow)
    rotated_at = DateTimeField(null=True)
    counted_since = DateTimeField(default=utcnow)
    verified = IntegerField(default=0)
    failures = IntegerField(default=0)
    last_failure_at = DateTimeField(null=True)

    class Meta:
        table_name = "site_identity"

    @property
    def failure_share(self) -> str:
        """The refused claims' share of all, as the site's page says it ("2.5")."""
        total = self.verified + self.failures
        return f"{100 * self.failures / total:.1f}".removesuffix(".0") if total else "0"


class VerifiedVisitor(BaseModel):
    """The visitor a site's signed-in user is, in every browser: one per site and user id."""

    site = ForeignKeyField(Site, on_delete="CASCADE")
    external_id = CharField(max_length=ID_MAX)
    visitor = ForeignKeyField(Visitor, unique=True, on_delete="CASCADE")
    verified_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "widget_verified_visitor"
        indexes = ((("site", "external_id"), True),)


IDENTITY_MODELS = [SiteIdentity, VerifiedVisitor]


# --- the owner's side: the secret ---------------------------------------------------------------


def identity_of(site_id: int) -> SiteIdentity | None:
    return SiteIdentity.get_or_none(SiteIdentity.site == site_id)


def replace_secret(site: Site) -> str:
    """Make the site's secret, or replace it (the old one stops verifying at once); the counts
    start again. Returns the new secret: the one time it leaves this module."""
    secret, now = new_secret(), utcnow()
    had_one = SiteIdentity.secret != ""  # the row as it was (a row may hold counts only)
    (SiteIdentity.insert(site=site.id, secret=secret, created_at=now, counted_since=now)
     .on_conflict(conflict_target=[SiteIdentity.site], update={
         SiteIdentity.secret: EXCLUDED.secret,
         SiteIdentity.created_at: Case(None, [(had_one, SiteIdentity.created_at)],
                                       EXCLUDED.created_at),
         SiteIdentity.rotated_at: Case(None, [(had_one, EXCLUDED.created_at)], None),
         SiteIdentity.counted_since: EXCLUDED.counted_since, SiteIdentity.verified: 0,
         SiteIdentity.failures: 0, SiteIdentity.last_failure_at: None})
     .execute())
    return secret


# --- the widget's side: a claim and its check ----------------------------------------------------


def signature(secret: str, external_id: str) -> str:
    """What the customer's server computes: HMAC-SHA256 of the user id, keyed with the whole
    secret, in lower-case hex."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def _controls(text: str) -> bool:
    return any(unicodedata.category(c)[0] == "C" for c in text)


def _plain(text: str, limit: int) -> str:
    """One line of text as given, without control characters (shown as text, never markup)."""
    kept = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return " ".join(kept.split())[:limit]


def _email(text: str) -> str:
    try:
        return validate_email(text.strip(), check_deliverability=False).normalized.lower()[:EMAIL_MAX]
    except (EmailNotValidError, ValueError):
        return ""  # not an address: the visitor's own (if any) is kept


@dataclass(frozen=True)
class Claim:
    """What the page said about its signed-in user (the frame posts it with user_* fields)."""

    external_id: str
    name: str
    email: str
    hash: str

    @classmethod
    def from_form(cls, form) -> "Claim | None":
        """The claim in a /visitors post, or None when the page named no user."""
        def value(name):
            found = form.get(name, "")
            return found if isinstance(found, str) else ""

        if not value("user_id") and not value("user_hash"):
            return None
        return cls(value("user_id"), _plain(value("user_name"), NAME_MAX),
                   _email(value("user_email")[:EMAIL_MAX + 10]),
                   value("user_hash")[:100].strip().lower())

    def signed_with(self, secret: str) -> bool:
        # The id is kept exactly as signed (it is what the site knows its user by): one it
        # could not be stored or shown as is refused rather than changed.
        if not secret or not self.external_id or len(self.external_id) > ID_MAX \
                or _controls(self.external_id):
            return False
        expected = signature(secret, self.external_id).encode()
        return hmac.compare_digest(expected, self.hash.encode("utf-8", "replace"))


def _refused(site_id: int) -> None:
    """Count a claim that failed its check (a site without a secret yet counts too: its page
    then says its pages send signed-in users that nothing can verify)."""
    now = utcnow()
    (SiteIdentity.insert(site=site_id, failures=1, last_failure_at=now)
     .on_conflict(conflict_target=[SiteIdentity.site], update={
         SiteIdentity.failures: SiteIdentity.failures + 1,
         SiteIdentity.last_failure_at: EXCLUDED.last_failure_at})
     .execute())


def _linked_visitor(site: Site, claim: Claim, page_url: str) -> Visitor:
    """The visitor of the site's user `claim` names, made on their first verified visit."""
    found = VerifiedVisitor.get_or_none((VerifiedVisitor.site == site.id)
                                        & (VerifiedVisitor.external_id == claim.external_id))
    if found is not None:
        return Visitor.get_by_id(found.visitor_id)
    try:
        with database.atomic():
            visitor, _ = widget_service.new_visitor(site, page_url)
            VerifiedVisitor.create(site=site.id, external_id=claim.external_id, visitor=visitor)
        return visitor
    except IntegrityError:
        # Their other browser made it first (the one user id index): that one is theirs.
        return Visitor.get_by_id(VerifiedVisitor.get(
            (VerifiedVisitor.site == site.id)
            & (VerifiedVisitor.external_id == claim.external_id)).visitor_id)


def is_verified(visitor: Visitor) -> bool:
    return VerifiedVisitor.select().where(VerifiedVisitor.visitor == visitor.id).exists()


def verified_as(visitor_id: int) -> str | None:
    """The site's own user id of a verified visitor (for the team), else None."""
    row = (VerifiedVisitor.select(VerifiedVisitor.external_id)
           .where(VerifiedVisitor.visitor == visitor_id).first())
    return row.external_id if row else None


def visitor_for(site: Site, form, current: Visitor | None) -> tuple[Visitor, bool] | None:
    """The visitor a /visitors post continues, with whether it is verified; None: a new
    anonymous visitor, as for a page that names no user.

    A verified claim gives the user's own visitor (their name and e-mail updated when the
    page gave new ones). A refused one is counted and gives what the post would have had
    without it: the anonymous visitor of the token it carried, never a verified one."""
    claim = Claim.from_form(form)
    if claim is None:
        return None
    identity = identity_of(site.id)
    if identity is None or not claim.signed_with(identity.secret):
        _refused(site.id)
        if current is not None and not is_verified(current):
            return current, False
        return None
    visitor = _linked_visitor(site, claim, form.get("page", "") or "")
    if current is not None and current.id != visitor.id and not is_verified(current):
        # Chatted before signing in: that chat is theirs now, on every device.
        chat_service.hand_over_conversations(current, visitor)
    name, email = claim.name or visitor.name, claim.email or visitor.email
    if (name, email) != (visitor.name, visitor.email):
        chat_service.update_visitor(visitor, name, email)
    SiteIdentity.update(verified=SiteIdentity.verified + 1).where(
        SiteIdentity.id == identity.id).execute()
    return visitor, True
