"""Time zones by name, as workspaces store them: one lookup for every area that shows or
plans local times (automations' schedules, business hours, reports)."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = ZoneInfo("UTC")


def zone(name: str | None) -> ZoneInfo:
    """The zone called `name`; UTC for an empty or unknown name (a workspace's zone is checked
    when it is saved, so an unknown one is a zone the system's database no longer has)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
