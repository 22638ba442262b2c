"""The staff area's rules: every look at or change to a customer's data goes on their access log."""

from flask import g

from app.staff.models import AuditEntry


def record(workspace_id: int, action: str) -> None:
    """Write it before the page is built, so a page that fails half-way is still on record."""
    AuditEntry.create(workspace=workspace_id, staff=g.user.id, staff_email=g.user.email,
                      action=action[:200])
