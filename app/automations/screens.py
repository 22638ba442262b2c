"""Read-side helpers for the automation screens: list rows with their state, run and audit
pages, and the geometry of the runs-per-day chart."""

import math
from datetime import timedelta

from peewee import fn

from app.accounts.models import Workspace
from app.automations.flows import registry
from app.automations.models import Automation, AutomationRun, Credential
from app.db import utcnow
from app.paging import whole_number
from app.staff.models import AuditEntry

RUNS_PAGE = 25
AUDIT_PAGE = 50
STATUSES = (AutomationRun.QUEUED, AutomationRun.RUNNING, AutomationRun.SUCCEEDED,
            AutomationRun.FAILED, AutomationRun.RETRYING, AutomationRun.SKIPPED)


def flow_title(name: str) -> str:
    flow = registry.FLOWS.get(name)
    return flow.title if flow else f"{name} (no longer available)"


def state(automation: Automation, workspace: Workspace, last_run: AutomationRun | None) -> str:
    """active, paused or failing: what the list and the detail page show in words and colour."""
    if automation.paused or workspace.automations_paused:
        return "paused"
    if last_run is not None and last_run.status == AutomationRun.FAILED:
        return "failing"
    return "active"


def last_runs(automation_ids) -> dict[int, AutomationRun]:
    """Each automation's newest run, in two queries whatever the number of automations."""
    ids = list(automation_ids)
    if not ids:
        return {}
    newest = (AutomationRun.select(fn.MAX(AutomationRun.id))
              .where(AutomationRun.automation.in_(ids)).group_by(AutomationRun.automation))
    return {r.automation_id: r for r in AutomationRun.select().where(AutomationRun.id.in_(newest))}


def automation_rows(workspace: Workspace) -> list[dict]:
    automations = list(Automation.select().where(Automation.workspace == workspace)
                       .order_by(Automation.name, Automation.id))
    runs = last_runs(a.id for a in automations)
    return [{"automation": a, "last_run": runs.get(a.id), "flow_title": flow_title(a.flow),
             "state": state(a, workspace, runs.get(a.id))} for a in automations]


def config_items(automation: Automation, config: dict) -> list[tuple[str, str]]:
    """The settings as (label, shown value) pairs, for reading only. Credentials appear by
    label and masked value; a setting the flow no longer has is listed under its key."""
    flow = registry.FLOWS.get(automation.flow)
    fields = list(flow.fields) if flow else []
    items, seen = [], set()
    for field in fields:
        seen.add(field.name)
        value = config.get(field.name, "")
        if field.kind == "credential":
            cred = None
            cred_id = whole_number(str(value))
            if cred_id is not None:
                cred = Credential.get_or_none((Credential.id == cred_id)
                                              & (Credential.workspace == automation.workspace_id))
            value = f"{cred.platform} · {cred.label} ({cred.masked})" if cred else (
                "none" if value in ("", None) else "missing (deleted?)")
        items.append((field.label, "" if value is None else str(value)))
    for key, value in config.items():
        if key not in seen:
            items.append((key, str(value)))
    return items


def runs_page(workspace_id: int, page: int = 1, automation_id: int | None = None,
              status: str = "", trigger: str = ""):
    """One page of runs, newest first, with their automation: (runs, more)."""
    query = (AutomationRun.select(AutomationRun, Automation).join(Automation)
             .where(AutomationRun.workspace == workspace_id))
    if automation_id:
        query = query.where(AutomationRun.automation == automation_id)
    if status:
        query = query.where(AutomationRun.status == status)
    if trigger:
        query = query.where(AutomationRun.trigger == trigger)
    page = max(1, page)
    rows = list(query.order_by(AutomationRun.id.desc())
                .limit(RUNS_PAGE + 1).offset((page - 1) * RUNS_PAGE))
    return rows[:RUNS_PAGE], len(rows) > RUNS_PAGE


def audit_page(workspace_id: int, page: int = 1):
    page = max(1, page)
    rows = list(AuditEntry.select().where(AuditEntry.workspace_id == workspace_id)
                .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
                .limit(AUDIT_PAGE + 1).offset((page - 1) * AUDIT_PAGE))
    return rows[:AUDIT_PAGE], len(rows) > AUDIT_PAGE


# --- the runs-per-day chart ---------------------------------------------------------------------

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 28


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50… at least `value`, so the axis reads easily."""
    if value <= 1:
        return 1
    power = 10 ** int(math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def chart(rows, days: int = 30) -> dict:
    """Bars for `rows` of (day, succeeded, failed), oldest first and one a day (as
    service.runs_per_day gives them), scaled to a rounded maximum."""
    counts = {d: (ok, bad) for d, ok, bad in rows}
    span = sorted(counts) or [utcnow().date() - timedelta(days=days - 1 - i) for i in range(days)]
    days = len(span)
    top = nice_ceiling(max((ok + bad for ok, bad in counts.values()), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / days
    bars = []
    for i, day in enumerate(span):
        ok, bad = counts.get(day, (0, 0))
        ok_h, bad_h = plot_h * ok / top, plot_h * bad / top
        base = TOP + plot_h
        bars.append({"day": day, "ok": ok, "failed": bad, "x": round(LEFT + i * slot + slot * .15, 1),
                     "w": round(slot * .7, 1), "ok_y": round(base - ok_h, 1), "ok_h": round(ok_h, 1),
                     "bad_y": round(base - ok_h - bad_h, 1), "bad_h": round(bad_h, 1)})
    ticks = [{"value": v, "y": round(TOP + plot_h - plot_h * v / top, 1)}
             for v in sorted({0, top // 2, top})]
    return {"bars": bars, "ticks": ticks, "width": WIDTH, "height": HEIGHT, "left": LEFT,
            "right": WIDTH - RIGHT, "base": TOP + plot_h, "label_y": HEIGHT - 8,
            "first": span[0], "last": span[-1],
            "succeeded": sum(b["ok"] for b in bars), "failed": sum(b["failed"] for b in bars)}
