"""Account and team rules, as plain functions that views and tasks share."""

import hashlib
import secrets
from datetime import timedelta

from flask import current_app, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from peewee import IntegrityError

from app import insight
from app.accounts import passwords, sessions
from app.accounts.models import Invitation, LoginThrottle, Membership, User, Workspace
from app.billing import limits as billing
from app.chat.models import Conversation, Message
from app.chat.notes import NoteMention
from app.db import database, utcnow
from app.errors import RuleError
from app.mail import service as mail

VERIFY_MAX_AGE = timedelta(days=2)
RESET_MAX_AGE = timedelta(hours=1)
EMAIL_CHANGE_MAX_AGE = timedelta(days=1)
INVITE_LIFETIME = timedelta(days=7)


class AccountError(RuleError):
    """An account or team rule said no."""


class BadLink(AccountError):
    def __init__(self, message="This link is not valid. It may have been used already or "
                 "copied incompletely."):
        super().__init__(message, status=400)


# --- signed links ------------------------------------------------------------------------


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"lumnar.{purpose}")


def make_token(purpose: str, payload) -> str:
    return _serializer(purpose).dumps(payload)


def read_token(purpose: str, token: str, max_age: timedelta):
    try:
        return _serializer(purpose).loads(token, max_age=int(max_age.total_seconds()))
    except SignatureExpired:
        raise BadLink("This link has expired. Ask for a new one.") from None
    except BadSignature:
        raise BadLink() from None


def _link(endpoint: str, **values) -> str:
    return current_app.config["BASE_URL"] + url_for(endpoint, **values)


def _fingerprint(value: str) -> str:
    # Ties a reset link to the password it replaces: once the password changes, the link dies.
    return hashlib.sha256(value.encode()).hexdigest()[:16]


# --- sign-up and verification -------------------------------------------------------------


def sign_up(name: str, email: str, password: str) -> User | None:
    """Create the account and its workspace, then e-mail a verification link.

    When the address is taken we change nothing and tell its owner by e-mail instead; the
    page looks the same either way, so sign-up cannot be used to learn who has an account.
    """
    existing = User.by_email(email)
    password_hash = passwords.hash_password(password)  # hashed either way: same time, same page
    if existing is not None:
        mail.send(existing.email, "signup_exists", "Someone tried to sign up with your address",
                  user=existing, login_url=_link("accounts.login_form"),
                  reset_url=_link("accounts.forgot_form"))
        return None
    try:
        with database.atomic():
            user = User.create(name=name, email=email, password_hash=password_hash)
            workspace = Workspace.create(name=f"{name}'s workspace"[:120])
            Membership.create(workspace=workspace, user=user, role=Membership.OWNER)
    except IntegrityError:
        return None  # a concurrent sign-up with the same address won the race
    send_verification(user)
    insight.count("account.signed_up")
    return user


def send_verification(user: User) -> None:
    token = make_token("verify", {"uid": user.id, "email": user.email})
    mail.send(user.email, "verify", "Confirm your e-mail address for Lumnar",
              user=user, url=_link("accounts.verify_email", token=token))


def verify_email(token: str) -> User:
    data = read_token("verify", token, VERIFY_MAX_AGE)
    user = User.get_or_none(User.id == data.get("uid"))
    if user is None or user.email != data.get("email"):
        raise BadLink()
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        user.save(only=[User.email_verified_at])
    return user


# --- log-in and lock-out --------------------------------------------------------------------


# The address-wide delay after LOCKOUT_ATTEMPTS failures from anywhere: 1 s, 2 s, 4 s … up to
# this. Slow enough that guessing from many clients gets nowhere, short enough that the owner,
# trying from their own client, is never kept out for long.
MAX_ADDRESS_DELAY = timedelta(seconds=60)


def _locked_message(minutes: int) -> str:
    return (f"Too many failed attempts: log-in for this address is locked for {minutes} minutes. "
            "You can reset your password meanwhile.")


def _slowed_message(seconds: int) -> str:
    return (f"Too many failed attempts for this address: wait {seconds} seconds, then try again. "
            "You can reset your password meanwhile.")


def _counters(email: str, client: str, now) -> tuple[LoginThrottle, LoginThrottle]:
    """(this client's row, the address's row) for `email`; a run of failures older than the
    lock-out time is forgotten, so counts only ever describe a recent attack."""
    forget = now - timedelta(minutes=current_app.config["LOCKOUT_MINUTES"])
    rows = []
    for who in (client, LoginThrottle.ANY_CLIENT):
        row, _ = LoginThrottle.get_or_create(email=email, client=who)
        stale = row.last_failure_at and row.last_failure_at < forget
        if stale and not (row.locked_until and row.locked_until > now):
            row.failures, row.alerted_at = 0, None
        rows.append(row)
    return rows[0], rows[1]


def _count_failure(mine: LoginThrottle, address: LoginThrottle, now) -> tuple[bool, bool]:
    """Record one failed attempt; returns (this client is now locked, the owner must be told)."""
    cfg = current_app.config
    limit = cfg["LOCKOUT_ATTEMPTS"]
    mine.failures += 1
    mine.last_failure_at = now
    locked = mine.failures >= limit
    if locked:
        mine.failures, mine.locked_until = 0, now + timedelta(minutes=cfg["LOCKOUT_MINUTES"])
    address.failures += 1
    address.last_failure_at = now
    alert = False
    if address.failures >= limit:
        delay = timedelta(seconds=2 ** min(address.failures - limit, 16))
        address.not_before = now + min(delay, MAX_ADDRESS_DELAY)
        alert = address.alerted_at is None
        if alert:
            address.alerted_at = now
    with database.atomic():
        mine.save()
        address.save()
    return locked, alert


def _tell_owner_of_attack(email: str) -> None:
    user = User.by_email(email)
    if user is not None:
        mail.send(user.email, "login_attack", "Someone is trying to log in to your Lumnar account",
                  user=user, attempts=current_app.config["LOCKOUT_ATTEMPTS"])


def authenticate(email: str, password: str, client: str = "") -> User:
    """Check the password. A client that fails LOCKOUT_ATTEMPTS times in a row for an address
    is locked out of it for LOCKOUT_MINUTES; failures for the address from everywhere only
    slow it down (a growing wait between attempts), and its owner is e-mailed once."""
    cfg = current_app.config
    now = utcnow()
    mine, address = _counters(email, client, now)
    if mine.locked_until and mine.locked_until > now:
        left = max(1, int((mine.locked_until - now).total_seconds() // 60) + 1)
        raise AccountError(_locked_message(min(left, cfg["LOCKOUT_MINUTES"])), status=429)
    if address.not_before and address.not_before > now:
        wait = max(1, int((address.not_before - now).total_seconds() + 0.999))
        raise AccountError(_slowed_message(wait), status=429)
    user = User.by_email(email)
    if not passwords.verify(user.password_hash if user else None, password):
        locked, alert = _count_failure(mine, address, now)
        if alert:
            _tell_owner_of_attack(email)
        if locked:
            raise AccountError(_locked_message(cfg["LOCKOUT_MINUTES"]), status=429)
        raise AccountError("That e-mail and password do not match an account.")
    # The owner got in: their client's count and the address's slow-down start again; a
    # stranger's lock on their own client stays.
    LoginThrottle.delete().where(
        (LoginThrottle.email == email)
        & LoginThrottle.client.in_([client, LoginThrottle.ANY_CLIENT])).execute()
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
        user.save(only=[User.password_hash])
    if not user.is_verified:
        send_verification(user)
        raise AccountError("Confirm your e-mail address first: we have just sent you a new link.",
                           status=403)
    return user


def log_out_everywhere(user: User) -> None:
    sessions.end_sessions(user)


# --- forgotten password --------------------------------------------------------------------


def request_password_reset(email: str) -> None:
    user = User.by_email(email)
    if user is None:
        return  # same page either way: the form never says whether an account exists
    token = make_token("reset", {"uid": user.id, "fp": _fingerprint(user.password_hash)})
    mail.send(user.email, "reset", "Reset your Lumnar password",
              user=user, url=_link("accounts.reset_form", token=token))


def user_for_reset(token: str) -> User:
    data = read_token("reset", token, RESET_MAX_AGE)
    user = User.get_or_none(User.id == data.get("uid"))
    if user is None or _fingerprint(user.password_hash) != data.get("fp"):
        raise BadLink("This reset link was already used or replaced by a newer one. Ask for a new one.")
    return user


def reset_password(token: str, password: str) -> User:
    user = user_for_reset(token)
    with database.atomic():
        user.password_hash = passwords.hash_password(password)
        # The link proved the address belongs to this person.
        user.email_verified_at = user.email_verified_at or utcnow()
        user.save()
        sessions.end_sessions(user)  # every old session ends
        LoginThrottle.delete().where(LoginThrottle.email == user.email).execute()
    mail.send(user.email, "password_changed", "Your Lumnar password was changed", user=user)
    return user


# --- profile ----------------------------------------------------------------------------------


def change_name(user: User, name: str) -> None:
    user.name = name
    user.save(only=[User.name])


def change_password(user: User, current: str, new: str) -> None:
    if not passwords.verify(user.password_hash, current):
        raise AccountError("Your current password is not right.", field="current_password")
    with database.atomic():
        user.password_hash = passwords.hash_password(new)
        user.save(only=[User.password_hash])
        sessions.end_sessions(user, keep_current=True)  # other sessions end; this one stays
    mail.send(user.email, "password_changed", "Your Lumnar password was changed", user=user)


def request_email_change(user: User, new_email: str, current_password: str) -> None:
    if not passwords.verify(user.password_hash, current_password):
        raise AccountError("Your current password is not right.", field="current_password")
    if new_email == user.email:
        raise AccountError("That is already your address.", field="new_email")
    token = make_token("email-change", {"uid": user.id, "old": user.email, "new": new_email})
    mail.send(new_email, "email_change_confirm", "Confirm your new e-mail address for Lumnar",
              user=user, new_email=new_email, url=_link("accounts.confirm_email_change", token=token))
    mail.send(user.email, "email_change_notice", "Your Lumnar e-mail address is being changed",
              user=user, new_email=new_email)


def confirm_email_change(token: str) -> User:
    data = read_token("email-change", token, EMAIL_CHANGE_MAX_AGE)
    user = User.get_or_none(User.id == data.get("uid"))
    if user is None or user.email != data.get("old"):
        raise BadLink("This link was already used or your address changed since it was sent.")
    try:
        with database.atomic():
            user.email = data["new"]
            user.email_verified_at = utcnow()
            user.save(only=[User.email, User.email_verified_at])
    except IntegrityError:
        raise AccountError("Another account uses that address now, so we kept your old one.",
                           status=409) from None
    return user


# --- workspaces and members -------------------------------------------------------------------


def rename_workspace(workspace: Workspace, name: str) -> None:
    workspace.name = name
    workspace.save(only=[Workspace.name])


def invite(workspace: Workspace, inviter: User, email: str, role: str) -> Invitation:
    if role not in Membership.ROLES:
        raise AccountError("Choose a role from the list.", field="role")
    already = (Membership.select().join(User)
               .where((Membership.workspace == workspace) & (User.email == email)).exists())
    if already:
        raise AccountError("That person is already a member of this workspace.", field="email")
    billing.check_new_member(workspace, field="email", replacing=email)
    with database.atomic():
        # A new invitation to the same address replaces any older one still pending.
        Invitation.update(revoked_at=utcnow()).where(
            (Invitation.workspace == workspace) & (Invitation.email == email)
            & Invitation.accepted_at.is_null() & Invitation.revoked_at.is_null()
        ).execute()
        invitation = Invitation.create(workspace=workspace, email=email, role=role,
                                       invited_by=inviter, expires_at=utcnow() + INVITE_LIFETIME)
    token = make_token("invite", invitation.id)
    mail.send(email, "invite", f"{inviter.name} invited you to {workspace.name} on Lumnar",
              inviter=inviter, workspace=workspace, url=_link("accounts.invitation_show", token=token),
              days=INVITE_LIFETIME.days)
    insight.count("team.member_invited")
    return invitation


def invitation_for(token: str) -> Invitation:
    invitation_id = read_token("invite", token, INVITE_LIFETIME)
    invitation = Invitation.get_or_none(Invitation.id == invitation_id)
    if invitation is None or invitation.revoked_at is not None:
        raise BadLink("This invitation was withdrawn. Ask for a new one.")
    if invitation.accepted_at is not None:
        raise BadLink("This invitation was already accepted.")
    if invitation.expires_at <= utcnow():
        raise BadLink("This invitation has expired. Ask for a new one.")
    return invitation


def accept_invitation(token: str, user: User) -> Membership:
    invitation = invitation_for(token)
    if user.email != invitation.email:
        raise AccountError(f"This invitation is for {invitation.email}. Log in with that address "
                           "to accept it.", status=403)
    with database.atomic():
        invitation.accepted_at = utcnow()
        invitation.save(only=[Invitation.accepted_at])
        membership, _ = Membership.get_or_create(
            workspace=invitation.workspace_id, user=user, defaults={"role": invitation.role})
    return membership


def revoke_invitation(workspace: Workspace, invitation_id: int) -> None:
    updated = Invitation.update(revoked_at=utcnow()).where(
        (Invitation.id == invitation_id) & (Invitation.workspace == workspace)
        & Invitation.accepted_at.is_null() & Invitation.revoked_at.is_null()
    ).execute()
    if not updated:
        raise AccountError("No such pending invitation.", status=404)


def remove_member(workspace: Workspace, acting: User, membership_id: int) -> None:
    membership = Membership.get_or_none(
        (Membership.id == membership_id) & (Membership.workspace == workspace))
    if membership is None:
        raise AccountError("No such member.", status=404)
    if membership.user_id == acting.id:
        raise AccountError("You cannot remove yourself from your own workspace.", status=409)
    membership.delete_instance()
    sessions.forget_user(membership.user_id)  # no more replies from them, at once
    forget_member(workspace.id, membership.user_id)


def forget_member(workspace_id: int, user_id: int) -> None:
    """What a workspace keeps of a member who left or was removed: the messages they wrote,
    by nobody in particular ("former agent"), and their conversations, unassigned. Their
    name leaves the workspace with them."""
    while True:
        ids = [m.id for m in Message.select(Message.id).where(
            (Message.workspace_id == workspace_id) & (Message.author == user_id)).limit(300)]
        if not ids:
            break
        Message.update(author=None).where(Message.id.in_(ids)).execute()
    Conversation.update(assignee=None).where(
        (Conversation.workspace == workspace_id) & (Conversation.assignee == user_id)).execute()
    NoteMention.delete().where((NoteMention.workspace_id == workspace_id)
                               & (NoteMention.user == user_id)).execute()


# --- demo --------------------------------------------------------------------------------------

# example.com, not *.localhost: the log-in form (email-validator) refuses special-use domains,
# so a .localhost demo address could never log in.
DEMO_EMAIL = "demo@example.com"


def create_demo_account():
    """On an empty database, a verified demo owner with a random password: (email, password).
    In development it is staff too, so that it can read the development outbox; a demo made
    on a production database gets no staff rights."""
    if User.select().exists():
        return None
    password = secrets.token_urlsafe(12)
    with database.atomic():
        user = User.create(name="Demo Owner", email=DEMO_EMAIL, email_verified_at=utcnow(),
                           password_hash=passwords.hash_password(password),
                           is_staff=current_app.config["ENV_NAME"] == "development")
        workspace = Workspace.create(name="Demo Shop")
        Membership.create(workspace=workspace, user=user, role=Membership.OWNER)
    return DEMO_EMAIL, password
