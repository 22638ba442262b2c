"""The access log customers read: one AuditEntry each time staff see or change their data."""

from flask import g

from app.automations.models import AuditEntry


def record(workspace_id: int, action: str) -> None:
    """Write it before the page is built, so a page that fails half-way is still on record."""
    AuditEntry.create(workspace=workspace_id, staff=g.user.id, staff_email=g.user.email,
                      action=action[:200])
