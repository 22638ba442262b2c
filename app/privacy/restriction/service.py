"""Restriction of processing: the owner's one switch. While it is on, the workspace's
automations hold (not resumable, not runnable, not even as a dry run), usage is not counted
and non-essential e-mail is not sent; every record is kept, chat stays readable and
answerable, and retention still deletes what is past its time. Who set and lifted it goes on
the workspace's access log."""

from app.accounts.models import User, Workspace
from app.db import database, utcnow
from app.errors import RuleError
from app.staff.models import AuditEntry

SET = "restricted processing (by the owner)"
LIFTED = "lifted the restriction of processing (by the owner)"


class ProcessingRestricted(RuleError):
    """What an automation answers while its workspace restricts processing (409)."""

    def __init__(self, message="Processing is restricted for this workspace: its automations "
                               "do not run until an owner lifts the restriction."):
        super().__init__(message, status=409)


def check_may_process(workspace: Workspace) -> None:
    """Refuse (ProcessingRestricted) any processing of a restricted workspace's data that is
    not needed to keep, show or answer it."""
    if workspace.processing_restricted:
        raise ProcessingRestricted()


def _log(workspace_id: int, by: User, action: str) -> None:
    """The access log names who did it. The owner's own entry is no news for the daily
    staff-access digest: it moves past it, unless staff entries still wait to be told."""
    entry = AuditEntry.create(workspace_id=workspace_id, staff_id=by.id, staff_email=by.email,
                              action=action[:200])
    told = Workspace.get_by_id(workspace_id).access_digest_after
    waiting = AuditEntry.select().where(
        (AuditEntry.workspace_id == workspace_id) & (AuditEntry.id > told)
        & (AuditEntry.id != entry.id)).exists()
    if not waiting:
        Workspace.update(access_digest_after=entry.id).where(Workspace.id == workspace_id).execute()


def restrict(workspace_id: int, by: User) -> Workspace:
    """Turn the restriction on (a second time changes nothing and logs nothing)."""
    with database.atomic():
        changed = Workspace.update(processing_restricted=True, restricted_at=utcnow()).where(
            (Workspace.id == workspace_id)
            & (Workspace.processing_restricted == False)).execute()  # noqa: E712
        if changed:
            _log(workspace_id, by, SET)
    return Workspace.get_by_id(workspace_id)


def lift(workspace_id: int, by: User) -> Workspace:
    """Turn it off. Automations come back as they were (a schedule whose slots passed runs
    once, and its log says so, as after any pause of the worker)."""
    with database.atomic():
        changed = Workspace.update(processing_restricted=False, restricted_at=None).where(
            (Workspace.id == workspace_id)
            & (Workspace.processing_restricted == True)).execute()  # noqa: E712
        if changed:
            _log(workspace_id, by, LIFTED)
    return Workspace.get_by_id(workspace_id)
