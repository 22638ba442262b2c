"""Staff pages (/staff/...): pick a workspace, then create, edit, test-run and delete its
automations with forms generated from each flow's Field schema. Anyone who is not staff gets
404, as if the area did not exist; every look at a customer's data goes to their access log."""

import json

from flask import Blueprint, abort, request, url_for

from app.accounts.models import Workspace
from app.automations import screens, service
from app.automations.flows import registry
from app.automations.forms import AutomationForm, TestRunForm, config_form, config_values
from app.automations.models import Automation, AutomationRun
from app.errors import RuleError
from app.rendering import go, render, render_form_errors
from app.staff import service as staff_service
from app.staff.forms import SuspendForm
from app.staff.service import record

bp = Blueprint("staff", __name__, url_prefix="/staff")

WORKSPACES_SHOWN = 100


# Checked for every staff URL here rather than per view, so none can forget it.
bp.before_request(staff_service.require_staff)


def workspace_or_404(workspace_id: int) -> Workspace:
    ws = Workspace.get_or_none(Workspace.id == workspace_id)
    if ws is None:
        abort(404)
    return ws


def automation_or_404(ws: Workspace, automation_id: int) -> Automation:
    automation = Automation.get_or_none((Automation.id == automation_id)
                                        & (Automation.workspace == ws))
    if automation is None:
        abort(404)
    return automation


def save(form, cfg, flow, ws, automation=None):
    """Create or update through the service, which raises the registry's ConfigError naming
    every bad field at once (the automation's own fields and the flow's settings)."""
    # The forms only carry the typed values (CSRFProtect has checked the token): the service
    # judges every field, the flow's settings included, in one pass.
    fields = dict(name=form.name.data, flow=flow.name, config=config_values(cfg),
                  trigger=form.trigger.data, cron=form.cron.data or "",
                  chat_event=form.chat_event.data or "", max_attempts=form.max_attempts.data)
    if automation is None:
        return service.create_automation(ws.id, **fields)
    return service.update_automation(automation, **fields)


def form_page(ws, flow, form, cfg, automation=None, error=None):
    """The new or edit form; with `error` (a ConfigError), each message beside its field in
    `form` or the flow's settings `cfg`, any other above the form."""
    context = dict(workspace=ws, staff_ws=ws, flow=flow, form=form, cfg=cfg, automation=automation)
    if automation is None:
        page = "staff/automation_new.html"
        context["action"] = url_for("staff.automation_create", workspace_id=ws.id)
    else:
        page = "staff/automation.html"
        runs, _ = screens.runs_page(ws.id, automation_id=automation.id)
        context.update(action=url_for("staff.automation_update", workspace_id=ws.id,
                                      automation_id=automation.id),
                       runs=runs, triggers_all=Automation.TRIGGERS,
                       test_form=TestRunForm(formdata=None))
    if error is not None:
        return render_form_errors(page, "staff/_automation_form.html", form, cfg, error=error,
                                  **context)
    return render(page, "staff/_automation_form.html", **context)


# --- workspaces ----------------------------------------------------------------------------------


@bp.get("/")
def workspace_list():
    q = request.args.get("q", "").strip()[:120]
    query = Workspace.select().order_by(Workspace.name, Workspace.id)
    if q:
        query = query.where(Workspace.name.contains(q))
    workspaces = list(query.limit(WORKSPACES_SHOWN + 1))
    return render("staff/workspaces.html", "staff/_workspaces.html", q=q,
                  workspaces=workspaces[:WORKSPACES_SHOWN], more=len(workspaces) > WORKSPACES_SHOWN)


@bp.get("/workspaces/<int:workspace_id>")
def workspace_show(workspace_id):
    ws = workspace_or_404(workspace_id)
    record(ws.id, "viewed the automations list")
    return render("staff/workspace.html", workspace=ws, staff_ws=ws,
                  rows=screens.automation_rows(ws), suspend_form=SuspendForm(formdata=None))


@bp.post("/workspaces/<int:workspace_id>/suspend")
def workspace_suspend(workspace_id):
    ws = workspace_or_404(workspace_id)
    form = SuspendForm()
    try:
        staff_service.suspend(ws, form.reason.data)
    except RuleError as err:
        return render_form_errors("staff/workspace.html", None, form, error=err, workspace=ws,
                                  staff_ws=ws, rows=screens.automation_rows(ws), suspend_form=form)
    return go(url_for("staff.workspace_show", workspace_id=ws.id))


@bp.post("/workspaces/<int:workspace_id>/unsuspend")
def workspace_unsuspend(workspace_id):
    ws = workspace_or_404(workspace_id)
    try:
        staff_service.unsuspend(ws)
    except RuleError:
        pass  # not suspended (a second click): the page shows the state as it is
    return go(url_for("staff.workspace_show", workspace_id=ws.id))


# --- automations ---------------------------------------------------------------------------------


@bp.get("/workspaces/<int:workspace_id>/automations/new")
def automation_new(workspace_id):
    ws = workspace_or_404(workspace_id)
    reg = registry
    name = request.args.get("flow", "")
    if name not in reg.FLOWS:
        # First pick a flow; its form follows, built from the flow's fields.
        return render("staff/flows.html", workspace=ws, staff_ws=ws, flows=reg.FLOWS,
                      problem="Unknown flow: choose one from the list." if name else "")
    flow = reg.FLOWS[name]
    record(ws.id, f"opened a new automation form ({flow.title}), listing credential labels")
    return form_page(ws, flow, AutomationForm(formdata=None), config_form(flow, ws.id))


@bp.post("/workspaces/<int:workspace_id>/automations")
def automation_create(workspace_id):
    ws = workspace_or_404(workspace_id)
    reg = registry
    try:
        flow = reg.get(request.form.get("flow", ""))
    except reg.ConfigError as err:  # no form yet: the message is the page's `problem`
        return render_form_errors("staff/flows.html", None, error=err, workspace=ws, staff_ws=ws,
                                  flows=reg.FLOWS)
    form = AutomationForm()
    cfg = config_form(flow, ws.id, formdata=request.form)
    try:
        automation = save(form, cfg, flow, ws)
    except RuleError as err:  # its settings (ConfigError), or the plan's limit (PlanLimit)
        record(ws.id, f"tried to create an automation ({flow.title}); refused, nothing saved")
        return form_page(ws, flow, form, cfg, error=err)
    record(ws.id, f"created automation '{automation.name}'")
    return go(url_for("staff.automation_edit", workspace_id=ws.id, automation_id=automation.id))


@bp.get("/workspaces/<int:workspace_id>/automations/<int:automation_id>")
def automation_edit(workspace_id, automation_id):
    ws = workspace_or_404(workspace_id)
    automation = automation_or_404(ws, automation_id)
    flow = flow_of(automation)
    record(ws.id, f"viewed automation '{automation.name}'")
    return form_page(ws, flow, AutomationForm(formdata=None, obj=automation),
                     config_form(flow, ws.id, data=json.loads(automation.config or "{}")),
                     automation=automation)


@bp.post("/workspaces/<int:workspace_id>/automations/<int:automation_id>")
def automation_update(workspace_id, automation_id):
    ws = workspace_or_404(workspace_id)
    automation = automation_or_404(ws, automation_id)
    flow = flow_of(automation)
    form = AutomationForm()
    cfg = config_form(flow, ws.id, formdata=request.form)
    old_name = automation.name
    try:
        save(form, cfg, flow, ws, automation)
    except registry.ConfigError as err:
        record(ws.id, f"tried to edit automation '{old_name}'; refused, nothing changed")
        return form_page(ws, flow, form, cfg, automation=Automation.get_by_id(automation.id),
                         error=err)
    record(ws.id, f"edited automation '{old_name}'")
    return go(url_for("staff.automation_edit", workspace_id=ws.id, automation_id=automation.id))


@bp.post("/workspaces/<int:workspace_id>/automations/<int:automation_id>/delete")
def automation_delete(workspace_id, automation_id):
    ws = workspace_or_404(workspace_id)
    automation = automation_or_404(ws, automation_id)
    record(ws.id, f"deleted automation '{automation.name}'")
    service.delete_automation(automation)
    return go(url_for("staff.workspace_show", workspace_id=ws.id))


@bp.post("/workspaces/<int:workspace_id>/automations/<int:automation_id>/test")
def automation_test(workspace_id, automation_id):
    ws = workspace_or_404(workspace_id)
    automation = automation_or_404(ws, automation_id)
    dry = bool(TestRunForm().dry_run.data)  # CSRFProtect has checked the token already
    record(ws.id, f"test-ran automation '{automation.name}'" + (" (dry run)" if dry else ""))
    run = service.run_now(automation, dry_run=dry)
    return go(url_for("staff.run_show", workspace_id=ws.id, run_id=run.id))


@bp.get("/workspaces/<int:workspace_id>/runs/<int:run_id>")
def run_show(workspace_id, run_id):
    ws = workspace_or_404(workspace_id)
    run = AutomationRun.get_or_none((AutomationRun.id == run_id) & (AutomationRun.workspace == ws))
    if run is None:
        abort(404)
    # The page refreshes itself until the run ends; those refreshes are the same look.
    if not request.htmx:
        record(ws.id, f"viewed run #{run.id} of '{run.automation.name}'")
    return render("staff/run.html", "automations/_run.html", workspace=ws, staff_ws=ws, run=run,
                  automation=run.automation, triggers_all=Automation.TRIGGERS,
                  run_url=url_for("staff.run_show", workspace_id=ws.id, run_id=run.id))


def flow_of(automation: Automation):
    flow = registry.FLOWS.get(automation.flow)
    if flow is None:
        abort(404)  # a flow removed from the code: nothing to build a form from
    return flow
