"""Security alerts: e-mails that tell an account holder something happened to their account
or workspace (a sign-in from a browser not seen before, a credential added, replaced or
removed, staff having looked at the workspace), when, from which browser, and what to do if
it was not them. Other areas send theirs through `send()` (exports, deletions)."""

from datetime import datetime

from flask import current_app, url_for
from peewee import fn

from app.accounts.models import KnownBrowser, Membership, User, Workspace, describe_browser
from app.db import database, utcnow
from app.mail import service as mail
from app.staff.models import AuditEntry

DIGEST_MAX = 200  # access-log lines in one digest; more are counted, and shown on the page


def _link(endpoint: str) -> str:
    return current_app.config["BASE_URL"] + url_for(endpoint)


def send(to: list[str], subject: str, what: str, *, browser: str = "", when: datetime | None = None,
         advice: str = "", lines: list[str] | None = None) -> None:
    """One alert to each address: what happened, when (UTC), from which browser, what to do
    if it was not them (by default: log out everywhere and change the password)."""
    advice = advice or ("If this was not you, log out everywhere and change your password "
                        "from your settings at once, then write to us.")
    for address in to:
        mail.send(address, "security_alert", subject, what=what, browser=browser,
                  when=(when or utcnow()).strftime("%d %B %Y, %H:%M UTC"), advice=advice,
                  lines=lines or [], settings_url=_link("accounts.settings"))


def owners(workspace_id: int) -> list[str]:
    return [u.email for u in User.select(User.email).join(Membership).where(
        (Membership.workspace == workspace_id) & (Membership.role == Membership.OWNER))]


def signed_in(user: User, user_agent: str) -> bool:
    """After a successful sign-in: remember the browser; tell the account holder when it is
    one this account has not signed in from before (the very first sign-in tells nobody: there
    is nothing to compare with). True when an alert was sent."""
    device = describe_browser(user_agent)[:80]
    with database.atomic():
        known = {b.device for b in KnownBrowser.select(KnownBrowser.device).where(KnownBrowser.user == user)}
        if device in known:
            return False
        KnownBrowser.insert(user=user, device=device).on_conflict_ignore().execute()
    if not known:
        return False
    send([user.email], "New sign-in to your Lumnar account",
         "Someone signed in to your Lumnar account from a browser it had not been used from before.",
         browser=device)
    return True


def credential_changed(workspace_id: int, action: str, label: str, by: User, user_agent: str) -> None:
    """A credential of the workspace was added, replaced or removed: every owner is told."""
    send(owners(workspace_id), f"A credential was {action} in your Lumnar workspace",
         f"{by.name} ({by.email}) {action} the credential “{label}” used by your automations.",
         browser=describe_browser(user_agent),
         advice="If you did not expect this, remove the credential from the Credentials page, "
                "revoke it on its platform, and write to us.")


def send_access_digests() -> int:
    """Once a day: each workspace whose access log has new entries (Lumnar staff looked at or
    changed its data) gets one e-mail to its owners listing them. Returns e-mails sent."""
    sent = 0
    # One query finds the workspaces with an entry newer than their last digest.
    newer = AuditEntry.select(AuditEntry.id).where(
        (AuditEntry.workspace_id == Workspace.id) & (AuditEntry.id > Workspace.access_digest_after))
    pending = (Workspace.select(Workspace.id, Workspace.name, Workspace.access_digest_after)
               .where(fn.EXISTS(newer)))
    for workspace in pending:
        entries = list(AuditEntry.select().where(
            (AuditEntry.workspace_id == workspace.id) & (AuditEntry.id > workspace.access_digest_after))
            .order_by(AuditEntry.id))
        if not entries:
            continue
        shown = entries[:DIGEST_MAX]
        lines = [f"{e.created_at:%d %b %H:%M} UTC · {e.staff_email} {e.action}" for e in shown]
        if len(entries) > len(shown):
            lines.append(f"… and {len(entries) - len(shown)} more on the Access log page.")
        # Moved on first: a digest sent twice would be worse than one retried later by hand.
        Workspace.update(access_digest_after=entries[-1].id).where(
            Workspace.id == workspace.id).execute()
        to = owners(workspace.id)
        send(to, "Lumnar staff accessed your workspace",
             f"Lumnar staff looked at or changed data of “{workspace.name}” "
             f"({len(entries)} {'entry' if len(entries) == 1 else 'entries'} on its access log):",
             lines=lines, advice="Each entry is on the Access log page of your dashboard. If you "
                                 "did not ask us for help and do not expect these, write to us.")
        sent += len(to)
    return sent

