"""Accounts and teams: people, their sessions and log-in throttles, workspaces, members and
invitations."""

from peewee import SQL, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from app.db import BaseModel, utcnow


class User(BaseModel):
    name = CharField(max_length=120)
    email = CharField(max_length=254, unique=True)  # stored lower-cased
    password_hash = CharField(max_length=255)
    email_verified_at = DateTimeField(null=True)
    is_staff = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None

    @classmethod
    def by_email(cls, email: str):
        return cls.get_or_none(cls.email == email.strip().lower())


def describe_browser(user_agent: str) -> str:
    """A rough, human description of a browser ("Firefox on Windows"): enough to recognise
    it, no more (no version, nothing that singles out one device)."""
    ua = user_agent or ""
    browser = next((b for b in ("Edg", "Firefox", "Chrome", "Safari") if b in ua), "Browser")
    system = next((o for o in ("Android", "iPhone", "iPad", "Windows", "Mac OS", "Linux") if o in ua), "")
    name = {"Edg": "Edge", "Mac OS": "macOS"}
    return f"{name.get(browser, browser)} on {name.get(system, system)}" if system else name.get(browser, browser)


class UserSession(BaseModel):
    """One row per logged-in browser. The signed cookie only names its row, so deleting the
    row (log out, log out everywhere, password change) ends that session even for someone
    holding a copy of the cookie."""

    sid = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    user_agent = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "user_session"

    @property
    def device(self) -> str:
        return describe_browser(self.user_agent)


class KnownBrowser(BaseModel):
    """The browsers (kind and system, as UserSession.device words them) an account has signed
    in from: a sign-in from one not seen before is told to the account holder by e-mail."""

    user = ForeignKeyField(User, backref="known_browsers", on_delete="CASCADE")
    device = CharField(max_length=80)
    first_seen_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "known_browser"
        indexes = ((("user", "device"), True),)


class LoginThrottle(BaseModel):
    """Failed log-ins for one e-mail address, whether or not an account has that address (a
    lock-out tells an attacker nothing about which addresses exist).

    One row per (address, client address) counts that client's failures and locks only that
    client out; the row whose `client` is ANY_CLIENT counts failures from everywhere and only
    ever slows the address down. A stranger can then lock out themselves, never the owner."""

    ANY_CLIENT = ""

    email = CharField(max_length=254)
    client = CharField(max_length=64, default=ANY_CLIENT)
    failures = IntegerField(default=0)
    last_failure_at = DateTimeField(null=True)
    locked_until = DateTimeField(null=True)  # per-client rows: this client may not try again
    not_before = DateTimeField(null=True)  # the address's row: nobody may try before this
    alerted_at = DateTimeField(null=True)  # the owner was told of this run of failures

    class Meta:
        table_name = "login_failure"
        indexes = ((("email", "client"), True),)


class Workspace(BaseModel):
    name = CharField(max_length=120)
    created_at = DateTimeField(default=utcnow)
    # Automations: schedules are read in this IANA time zone; run logs are kept this long;
    # `automations_paused` is "pause all" (the restriction right reuses it).
    timezone = CharField(max_length=64, default="UTC")
    run_log_days = IntegerField(default=14)
    automations_paused = BooleanField(default=False)
    # Billing (migration 14): the plan (app/billing/plans.py), Stripe's word on its payment
    # ("" with no subscription, else "active", "past_due", ...), and the plan's monthly limit
    # of new conversations copied here when the plan changes, beside this month's count, so
    # that the chat's message path checks it in the one statement that counts.
    # (SQL defaults too, as migration 14 adds them: a fresh database and a migrated one agree.)
    plan = CharField(max_length=16, default="free", constraints=[SQL("DEFAULT 'free'")])
    plan_status = CharField(max_length=24, default="", constraints=[SQL("DEFAULT ''")])
    conversation_limit = IntegerField(null=True, default=300, constraints=[SQL("DEFAULT 300")])
    # "2026-11": the month counted below
    usage_month = CharField(max_length=7, default="", constraints=[SQL("DEFAULT ''")])
    month_conversations = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
    # Suspended by Lumnar staff for fraud or abuse (migration 15): the widget is unavailable,
    # automations do not run, members see the reason; every record is kept.
    suspended_at = DateTimeField(null=True)
    suspended_reason = CharField(max_length=500, default="", constraints=[SQL("DEFAULT ''")])
    # "Restrict processing" (migration 16): automations held, usage not counted, non-essential
    # e-mail off; data kept and chat readable (app/privacy/restriction).
    processing_restricted = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    restricted_at = DateTimeField(null=True)
    # The newest access-log entry already told to the owners in the daily digest (migration 15).
    access_digest_after = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])

    def members(self):
        return (
            Membership.select(Membership, User)
            .join(User)
            .where(Membership.workspace == self)
            .order_by(Membership.role.desc(), User.name)
        )


class Membership(BaseModel):
    OWNER = "owner"
    AGENT = "agent"
    ROLES = (OWNER, AGENT)

    workspace = ForeignKeyField(Workspace, backref="memberships", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    role = CharField(max_length=16, default=AGENT)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("workspace", "user"), True),)

    @property
    def is_owner(self) -> bool:
        return self.role == self.OWNER

    @classmethod
    def of(cls, user):
        return (
            cls.select(cls, Workspace)
            .join(Workspace)
            .where(cls.user == user)
            .order_by(Workspace.created_at)
        )


class Invitation(BaseModel):
    workspace = ForeignKeyField(Workspace, backref="invitations", on_delete="CASCADE")
    email = CharField(max_length=254)
    role = CharField(max_length=16, default=Membership.AGENT)
    invited_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    accepted_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    @classmethod
    def pending_for(cls, workspace):
        return cls.select().where(
            (cls.workspace == workspace)
            & cls.accepted_at.is_null()
            & cls.revoked_at.is_null()
            & (cls.expires_at > utcnow())
        )


ACCOUNT_MODELS = [User, UserSession, LoginThrottle, Workspace, Membership, Invitation, KnownBrowser]
