"""Deleting a workspace or an account, and a member leaving a workspace.

A deletion is asked for with the password and waits GRACE (14 days): signing in and pressing
"Cancel deletion" stops it, and a reminder goes out REMIND_BEFORE the end. Meanwhile the
workspace works as before, but its Stripe subscription is set to end with its period. Then
the worker (jobs/deletion.py) cancels the subscription and deletes in batches, each its own
short transaction, the way the retention purges do, so that no transaction outlives Huey's
lock and chat in other workspaces keeps answering. What stays: billing records (kept by law,
app/billing) and the access log, anonymised. The confirmation e-mail is the last one sent.

An account's deletion takes with it the workspaces where it is the only owner (the page says
which). A member who leaves, or is removed, takes their personal data away: the messages they
wrote stay with the workspace, shown as written by a former agent.
"""

import logging
from datetime import timedelta

from flask import current_app, url_for

from app.accounts import passwords, sessions
from app.accounts import service as accounts
from app.accounts.models import (
    Invitation,
    LoginThrottle,
    Membership,
    User,
    UserSession,
    Workspace,
)
from app.automations.models import Automation, AutomationRun, Credential, WorkspaceKey
from app.chat.models import ChatEvent, Conversation, EventCounter, Message, Presence, SavedReply
from app.db import database, delete_in_batches, utcnow
from app.errors import RuleError
from app.mail import service as mail
from app.mail.models import OutboundEmail
from app.privacy import erasure
from app.privacy.deletion.models import DeletionRequest
from app.privacy.export.models import ExportRequest
from app.privacy.restriction import objection
from app.staff.models import AuditEntry
from app.widget.models import OriginSeen, Site, Visitor

log = logging.getLogger(__name__)

GRACE = timedelta(days=14)
REMIND_BEFORE = timedelta(days=2)
BATCH = 300
# What an anonymised access-log entry says instead of the customer's own address.
ANONYMOUS = "a member of the deleted workspace"


class DeletionError(RuleError):
    """A deletion rule said no."""


def _check_password(user: User, password: str) -> None:
    if not passwords.verify(user.password_hash, password or ""):
        raise DeletionError("Your password is not right: nothing was scheduled.",
                            field="password")


# --- what the page shows -------------------------------------------------------------------------


def pending_for_workspace(workspace_id: int) -> DeletionRequest | None:
    return DeletionRequest.get_or_none((DeletionRequest.kind == DeletionRequest.WORKSPACE)
                                       & (DeletionRequest.workspace_id == workspace_id))


def pending_for_account(user_id: int) -> DeletionRequest | None:
    return DeletionRequest.get_or_none((DeletionRequest.kind == DeletionRequest.ACCOUNT)
                                       & (DeletionRequest.user_id == user_id))


def sole_owned(user_id: int) -> list[Workspace]:
    """The workspaces where `user_id` is the only owner: deleting the account deletes them."""
    owners = (Membership.select(Membership.workspace)
              .where((Membership.role == Membership.OWNER) & (Membership.user != user_id)))
    return list(Workspace.select().join(Membership).where(
        (Membership.user == user_id) & (Membership.role == Membership.OWNER)
        & Workspace.id.not_in(owners)).order_by(Workspace.id))


# --- asking and cancelling -----------------------------------------------------------------------


def _subscriptions_end(workspace_ids: list[int], at_period_end: bool) -> None:
    from app.billing import service as billing

    for workspace_id in workspace_ids:
        billing.cancel_at_period_end(workspace_id, at_period_end)


def request_workspace_deletion(membership: Membership, user: User, password: str) -> DeletionRequest:
    """An owner asks for the workspace's deletion, in GRACE days."""
    if not membership.is_owner:
        raise DeletionError("Only an owner can delete the workspace.", status=403)
    _check_password(user, password)
    workspace_id = membership.workspace_id
    if pending_for_workspace(workspace_id) is not None:
        raise DeletionError("This workspace's deletion is already scheduled.", status=409)
    _subscriptions_end([workspace_id], True)  # first: a Stripe refusal leaves nothing half-done
    request = DeletionRequest.create(
        kind=DeletionRequest.WORKSPACE, workspace_id=workspace_id, requested_by=user.id,
        notify_email=user.email, delete_after=utcnow() + GRACE)
    _tell_owners(workspace_id, "deletion_scheduled", "Your Lumnar workspace will be deleted",
                 request=request, workspace=membership.workspace)
    return request


def request_account_deletion(user: User, password: str) -> DeletionRequest:
    """Anyone asks for their account's deletion, in GRACE days, with the workspaces only
    they own."""
    _check_password(user, password)
    if pending_for_account(user.id) is not None:
        raise DeletionError("Your account's deletion is already scheduled.", status=409)
    if user.is_staff:
        raise DeletionError("A Lumnar staff account is closed by Lumnar, not from this page.",
                            status=409)
    owned = sole_owned(user.id)
    _subscriptions_end([w.id for w in owned], True)
    request = DeletionRequest.create(kind=DeletionRequest.ACCOUNT, user_id=user.id,
                                     requested_by=user.id, notify_email=user.email,
                                     delete_after=utcnow() + GRACE)
    mail.send(user.email, "deletion_scheduled", "Your Lumnar account will be deleted",
              request=request, workspaces=owned, user=user, signin_url=_signin_url())
    return request


def cancel(request_id: int, user: User) -> None:
    """Whoever may ask for a deletion may cancel it while its grace period runs."""
    request = DeletionRequest.get_or_none(DeletionRequest.id == request_id)
    allowed = request is not None and request.started_at is None and (
        request.user_id == user.id if request.kind == DeletionRequest.ACCOUNT else
        Membership.select().where((Membership.workspace == request.workspace_id)
                                  & (Membership.user == user.id)
                                  & (Membership.role == Membership.OWNER)).exists())
    if not allowed:
        raise DeletionError("There is no deletion of yours to cancel.", status=404)
    owned = ([request.workspace_id] if request.kind == DeletionRequest.WORKSPACE
             else [w.id for w in sole_owned(user.id)])
    _subscriptions_end(owned, False)
    DeletionRequest.delete().where((DeletionRequest.id == request.id)
                                   & DeletionRequest.started_at.is_null()).execute()


# --- the worker's part ---------------------------------------------------------------------------


def send_reminders(now=None) -> int:
    """REMIND_BEFORE the end of its grace period, each pending deletion is told once more."""
    now = now or utcnow()
    sent = 0
    for request in DeletionRequest.select().where(
            DeletionRequest.reminded_at.is_null() & DeletionRequest.started_at.is_null()
            & (DeletionRequest.delete_after <= now + REMIND_BEFORE)):
        claimed = DeletionRequest.update(reminded_at=now).where(
            (DeletionRequest.id == request.id) & DeletionRequest.reminded_at.is_null()).execute()
        if not claimed:
            continue  # another worker thread took it
        what = ("workspace" if request.kind == DeletionRequest.WORKSPACE else "account")
        workspace = (Workspace.get_or_none(Workspace.id == request.workspace_id)
                     if request.workspace_id else None)
        mail.send(request.notify_email, "deletion_reminder",
                  f"Your Lumnar {what} will be deleted in two days", request=request,
                  workspace=workspace, signin_url=_signin_url())
        sent += 1
    return sent


def run_due(now=None) -> int:
    """Carry out every deletion whose grace period is over; how many were done. A deletion
    interrupted half-way (a crash, a Stripe outage) is taken up again on the next run."""
    now = now or utcnow()
    done = 0
    due = list(DeletionRequest.select().where(DeletionRequest.delete_after <= now)
               .order_by(DeletionRequest.delete_after))
    for request in due:
        if not DeletionRequest.select().where(DeletionRequest.id == request.id).exists():
            continue  # its workspace went with an account deleted just before
        DeletionRequest.update(started_at=request.started_at or now).where(
            DeletionRequest.id == request.id).execute()
        if request.kind == DeletionRequest.WORKSPACE:
            delete_workspace(request.workspace_id)
            subject, what = "Your Lumnar workspace was deleted", "workspace"
        else:
            delete_account(request.user_id)
            subject, what = "Your Lumnar account was deleted", "account"
        DeletionRequest.delete().where(DeletionRequest.id == request.id).execute()
        erasure.request_erasure()  # the deleted words leave the file's bytes too
        # Last: nothing about the deleted data is written after this e-mail.
        mail.send(request.notify_email, "deletion_done", subject, what=what)
        done += 1
    return done


def _batches(model, where, before=None) -> int:
    return delete_in_batches(model, where, BATCH, before)


def _delete_conversations(workspace_id: int) -> int:
    """The workspace's messages (with attachments and search entries, by cascade and
    trigger) BATCH at a time, then its conversations with their events: a long
    conversation's messages would otherwise make one long transaction."""
    _batches(Message, Message.workspace_id == workspace_id)
    return _batches(Conversation, Conversation.workspace == workspace_id, lambda ids: ChatEvent.delete()
                    .where(ChatEvent.conversation_id.in_(ids)).execute())


def _forget_outbox(where) -> int:
    return _batches(OutboundEmail, where, objection.forget_kinds)


def _anonymise_access_log(where) -> None:
    """Entries stay two years (what was done, when, by which Lumnar staff member); a
    customer's own entries lose who they were."""
    # An entry with no id was written by a staff account closed since (its address is a
    # Lumnar address, kept on purpose); any other id that is not staff's is the customer's.
    staff = User.select(User.id).where(User.is_staff == True)  # noqa: E712
    AuditEntry.update(staff_id=None, staff_email=ANONYMOUS).where(
        where & AuditEntry.staff_id.is_null(False) & AuditEntry.staff_id.not_in(staff)).execute()


def delete_workspace(workspace_id: int) -> None:
    """Everything of the workspace, but its billing records and its anonymised access log."""
    from app.billing import service as billing

    workspace = Workspace.get_or_none(Workspace.id == workspace_id)
    if workspace is None:
        return  # done before, or gone with its last account
    # Cancel the subscription first: if Stripe does not answer, nothing is deleted yet and
    # the next run tries again (deleting a workspace that is still being charged would be
    # worse than waiting an hour).
    billing.cancel_now(workspace_id)
    # The widget goes offline and automations stop while the batches run.
    Workspace.update(suspended_at=utcnow(), suspended_reason="This workspace is being deleted.") \
        .where(Workspace.id == workspace_id).execute()
    sites = Site.select(Site.id).where(Site.workspace == workspace_id)
    counts = {
        "conversations": _delete_conversations(workspace_id),
        "events": _batches(ChatEvent, ChatEvent.workspace_id == workspace_id),
        "visitors": _batches(Visitor, Visitor.site.in_(sites)),
        "runs": _batches(AutomationRun, AutomationRun.workspace == workspace_id),
        "e-mails": _forget_outbox(OutboundEmail.workspace_id == workspace_id),
    }
    for export in ExportRequest.select().where(ExportRequest.workspace == workspace_id):
        _remove_export_file(export)
    # Requests sent to Lumnar from the contact page outlive the workspace on purpose (their
    # link to it becomes empty): they show how each request was handled (app/contact).
    with database.atomic():
        for model, where in (
                (OriginSeen, OriginSeen.site.in_(sites)),
                (Presence, Presence.workspace_id == workspace_id),
                (EventCounter, EventCounter.workspace_id == workspace_id),
                (Automation, Automation.workspace == workspace_id),
                (Credential, Credential.workspace == workspace_id),
                # The data key last among the vault's rows: old backups' credentials with it.
                (WorkspaceKey, WorkspaceKey.workspace == workspace_id),
                (SavedReply, SavedReply.workspace == workspace_id),
                (Invitation, Invitation.workspace == workspace_id),
                (ExportRequest, ExportRequest.workspace == workspace_id),
                (Site, Site.workspace == workspace_id)):
            model.delete().where(where).execute()
        members = [m.user_id for m in Membership.select(Membership.user)
                   .where(Membership.workspace == workspace_id)]
        _anonymise_access_log(AuditEntry.workspace_id == workspace_id)
        Workspace.delete().where(Workspace.id == workspace_id).execute()  # memberships cascade
        # A deletion of this workspace asked for separately has nothing left to do.
        DeletionRequest.delete().where((DeletionRequest.kind == DeletionRequest.WORKSPACE)
                                       & (DeletionRequest.workspace_id == workspace_id)
                                       & DeletionRequest.started_at.is_null()).execute()
    for user_id in members:
        sessions.forget_user(user_id)
    log.info("workspace deleted: %s", ", ".join(f"{v} {k}" for k, v in counts.items()))


def _remove_export_file(export: ExportRequest) -> None:
    from app.privacy.export import service as export_service

    if export.filename:
        (export_service.folder() / export.filename).unlink(missing_ok=True)


def delete_account(user_id: int) -> None:
    """The account with everything personal to it; the workspaces only it owned first."""
    user = User.get_or_none(User.id == user_id)
    if user is None:
        return
    for workspace in sole_owned(user_id):
        delete_workspace(workspace.id)
    for membership in Membership.select().where(Membership.user == user_id):
        accounts.forget_member(membership.workspace_id, user_id)
    for export in ExportRequest.select().where(ExportRequest.user == user_id):
        _remove_export_file(export)
    _forget_outbox(OutboundEmail.to == user.email)
    with database.atomic():
        _anonymise_access_log(AuditEntry.staff_id == user_id)
        LoginThrottle.delete().where(LoginThrottle.email == user.email).execute()
        ExportRequest.delete().where(ExportRequest.user == user_id).execute()
        UserSession.delete().where(UserSession.user == user_id).execute()
        # Sessions, browsers, memberships, policy acknowledgements cascade.
        User.delete().where(User.id == user_id).execute()
    sessions.forget_user(user_id)


def may_leave(membership: Membership) -> bool:
    """Anyone but a workspace's last owner may leave it."""
    return not membership.is_owner or Membership.select().where(
        (Membership.workspace == membership.workspace_id) & (Membership.role == Membership.OWNER)
        & (Membership.user != membership.user_id)).exists()


def leave_workspace(membership: Membership) -> None:
    """A member leaves (an owner only when another owner stays)."""
    if not may_leave(membership):
        raise DeletionError("You are this workspace's only owner: make someone else an owner "
                            "first, or delete the workspace.", status=409)
    with database.atomic():
        Membership.delete().where(Membership.id == membership.id).execute()
    accounts.forget_member(membership.workspace_id, membership.user_id)
    sessions.forget_user(membership.user_id)


# --- e-mail --------------------------------------------------------------------------------------


def _signin_url() -> str:
    return current_app.config["BASE_URL"] + url_for("accounts.login_form")


def _tell_owners(workspace_id: int, template: str, subject: str, **context) -> None:
    owners = [u.email for u in User.select(User.email).join(Membership).where(
        (Membership.workspace == workspace_id) & (Membership.role == Membership.OWNER))]
    for email in owners:
        mail.send(email, template, subject, signin_url=_signin_url(), **context)
