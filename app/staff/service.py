"""The staff area's rules: every look at or change to a customer's data goes on their access log."""

from flask import abort, g

from app.accounts.models import Workspace
from app.db import database, utcnow
from app.errors import RuleError
from app.staff.models import AuditEntry
from app.widget.service import forget_sites_of


def require_staff() -> None:
    """The staff area's one rule, for every staff URL of every area (a blueprint's
    before_request): anyone who is not staff gets 404, as if the area did not exist."""
    if g.get("user") is None or not g.user.is_staff:
        abort(404)


def suspend(workspace: Workspace, reason: str) -> None:
    """Suspend a workspace for fraud or abuse: its widget answers "unavailable", its
    automations stop, its members see the reason; nothing is deleted. On the access log."""
    reason = " ".join((reason or "").split())
    if not 10 <= len(reason) <= 500:
        raise RuleError("Give the reason the customer will read (10 to 500 characters).",
                        field="reason")
    if workspace.suspended_at is not None:
        raise RuleError("This workspace is already suspended.", status=409)
    with database.atomic():
        record(workspace.id, f"suspended the workspace: {reason}")
        Workspace.update(suspended_at=utcnow(), suspended_reason=reason).where(
            Workspace.id == workspace.id).execute()
    forget_sites_of(workspace.id)  # this process's widget knows at once, others within seconds


def unsuspend(workspace: Workspace) -> None:
    if workspace.suspended_at is None:
        raise RuleError("This workspace is not suspended.", status=409)
    with database.atomic():
        record(workspace.id, "lifted the suspension")
        Workspace.update(suspended_at=None, suspended_reason="").where(
            Workspace.id == workspace.id).execute()
    forget_sites_of(workspace.id)


def record(workspace_id: int, action: str) -> None:
    """Write it before the page is built, so a page that fails half-way is still on record."""
    AuditEntry.create(workspace_id=workspace_id, staff_id=g.user.id, staff_email=g.user.email,
                      action=action[:200])
