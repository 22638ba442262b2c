"""Dashboard: the workspace's credentials (write-only secrets, shown masked), its automations
with their runs and chart, and the access log of what Lumnar staff looked at."""

import json
from datetime import timezone

from flask import Blueprint, current_app, g, request, url_for
from wtforms.validators import ValidationError

from app.accounts.sessions import login_required, owner_required, scoped_or_404, workspace_id
from app.automations import screens, service
from app.automations.forms import AutomationSettingsForm, CredentialForm
from app.automations.models import Automation, AutomationRun, Credential
from app.errors import RuleError
from app.paging import id_arg, page_arg
from app.rendering import go, render, render_form_errors
from app.security import error_page
from app.timezones import zone

bp = Blueprint("automations", __name__, url_prefix="/dashboard")


def replace_form(cred, formdata=None):
    # Each row's form has its own field prefix, so ids stay unique on the page.
    return CredentialForm(formdata=formdata, prefix=f"c{cred.id}", obj=cred)


def credentials_page(form=None, failed_id=None):
    """The credentials page; with `form`, the one that failed (the new credential's, or the
    replace form of the row `failed_id`), its errors beside its fields."""
    creds = list(Credential.select().where(Credential.workspace == workspace_id())
                 .order_by(Credential.platform, Credential.label))
    if form is not None:
        # Whatever happens, typed secrets never travel back to the browser.
        form.secret.data = form.secret2.data = form.secret_map.data = ""
    replace_forms = {c.id: (form if c.id == failed_id else replace_form(c)) for c in creds}
    create_form = form if (form is not None and failed_id is None) else CredentialForm(formdata=None)
    fragment = None if failed_id else "automations/_credential_form.html"
    context = dict(credentials=creds, form=create_form, replace_forms=replace_forms,
                   kinds=Credential.KINDS, action=url_for("automations.credential_create"))
    if form is not None:
        return render_form_errors("automations/credentials.html", fragment, form, **context)
    return render("automations/credentials.html", fragment, **context)


@bp.get("/credentials")
@login_required
def credentials():
    return credentials_page()


@bp.post("/credentials")
@owner_required
def credential_create():
    form = CredentialForm()
    try:
        if not form.validate_on_submit():
            raise ValidationError
        secrets = form.secrets()
    except ValidationError:
        return credentials_page(form)
    service.add_credential(workspace_id(), form.platform.data, form.label.data, form.kind.data,
                           secrets, by=g.user, user_agent=request.user_agent.string or "")
    return go(url_for("automations.credentials"))


@bp.post("/credentials/<int:credential_id>/replace")
@owner_required
def credential_replace(credential_id):
    cred = scoped_or_404(Credential, credential_id)
    form = CredentialForm(prefix=f"c{cred.id}")
    try:
        if not form.validate_on_submit():
            raise ValidationError
        secrets = form.secrets()
    except ValidationError:
        return credentials_page(form, failed_id=cred.id)
    service.add_credential(cred.workspace_id, form.platform.data, form.label.data, form.kind.data,
                           secrets, by=g.user, user_agent=request.user_agent.string or "",
                           replacing=cred)
    return go(url_for("automations.credentials"))


@bp.post("/credentials/<int:credential_id>/delete")
@owner_required
def credential_delete(credential_id):
    service.remove_credential(scoped_or_404(Credential, credential_id), by=g.user,
                              user_agent=request.user_agent.string or "")
    return go(url_for("automations.credentials"))


# --- automations ---------------------------------------------------------------------------------
# Lumnar staff set automations up (app/staff); customers watch them, pause them and run them.


def current_workspace():
    workspace_id()  # 404 for someone who belongs to no workspace
    return g.membership.workspace


def runs_per_day(ws_id, automation_id=None):
    return screens.chart(service.runs_per_day(ws_id, days=30, automation_id=automation_id))


def run_filters() -> dict:
    """The runs table's filters from the query string; unknown values mean "any"."""
    status = request.args.get("status", "")
    trigger = request.args.get("trigger", "")
    return {"status": status if status in screens.STATUSES else "",
            "trigger": trigger if trigger in Automation.TRIGGERS else "",
            "page": page_arg()}


def settings_form(ws, formdata=None):
    form = AutomationSettingsForm(formdata=formdata, timezone=ws.timezone,
                                  run_log_days=str(ws.run_log_days))
    form.timezone.choices = service.time_zones()
    return form


def list_page(ws, settings=None, error: RuleError | None = None):
    """The automations list; with `settings`, the settings form that failed (its own validation
    or the service's `error`), its errors beside its fields."""
    context = dict(workspace=ws, rows=screens.automation_rows(ws), chart=runs_per_day(ws.id),
                   settings=settings or settings_form(ws))
    if settings is not None:
        return render_form_errors("automations/list.html", "automations/_list.html", settings,
                                  error=error, **context)
    return render("automations/list.html", "automations/_list.html", **context)


@bp.get("/automations")
@login_required
def automation_list():
    return list_page(current_workspace())


@bp.post("/automations/settings")
@owner_required
def automation_settings_update():
    ws = current_workspace()
    form = settings_form(ws, formdata=request.form)
    if not form.validate_on_submit():
        return list_page(ws, form)
    try:
        service.update_settings(ws.id, form.timezone.data, form.run_log_days.data)
    except RuleError as err:  # the registry's ConfigError: a message for each bad field
        return list_page(ws, form, err)
    return go(url_for("automations.automation_list"))


@bp.post("/automations/pause-all")
@owner_required
def automations_pause_all():
    service.pause_all(workspace_id())
    return go(url_for("automations.automation_list"))


@bp.post("/automations/resume-all")
@owner_required
def automations_resume_all():
    service.resume_all(workspace_id())
    return go(url_for("automations.automation_list"))


@bp.get("/automations/<int:automation_id>")
@login_required
def automation_show(automation_id):
    automation = scoped_or_404(Automation, automation_id)
    ws = current_workspace()
    runs, more = screens.runs_page(ws.id, automation_id=automation.id)
    hook_url = (f"{current_app.config['BASE_URL']}/hooks/{automation.webhook_secret}"
                if automation.trigger == Automation.WEBHOOK and automation.webhook_secret else "")
    last = screens.last_runs([automation.id]).get(automation.id)
    return render("automations/detail.html", workspace=ws, automation=automation,
                  flow_title=screens.flow_title(automation.flow),
                  state=screens.state(automation, ws, last),
                  config=screens.config_items(automation, json.loads(automation.config or "{}")),
                  runs=runs, more=more, hook_url=hook_url, triggers_all=Automation.TRIGGERS,
                  chart=runs_per_day(ws.id, automation.id))


@bp.post("/automations/<int:automation_id>/pause")
@owner_required
def automation_pause(automation_id):
    service.pause(scoped_or_404(Automation, automation_id))
    return go(url_for("automations.automation_show", automation_id=automation_id))


@bp.post("/automations/<int:automation_id>/resume")
@owner_required
def automation_resume(automation_id):
    try:
        service.resume(scoped_or_404(Automation, automation_id))
    except RuleError as err:  # the plan allows no more active automations: still paused
        return error_page(err.status, "Not resumed", err.message)
    return go(url_for("automations.automation_show", automation_id=automation_id))


@bp.post("/automations/<int:automation_id>/run")
@owner_required
def automation_run(automation_id):
    try:
        run = service.run_now(scoped_or_404(Automation, automation_id))
    except RuleError as err:  # paused: nothing was queued
        return error_page(err.status, "Not run", err.message)
    return go(url_for("automations.run_show", run_id=run.id))


@bp.get("/automations/runs")
@login_required
def run_list():
    ws = current_workspace()
    filters = run_filters()
    automation = None
    automation_id = id_arg("automation")
    if automation_id:
        automation = scoped_or_404(Automation, automation_id)
    runs, more = screens.runs_page(ws.id, automation_id=automation.id if automation else None,
                                   **filters)
    # The filters travel as one dict: "status" is also render()'s HTTP status argument.
    return render("automations/runs.html", "automations/_runs.html", workspace=ws, runs=runs,
                  more=more, automation=automation, statuses=screens.STATUSES,
                  triggers=Automation.TRIGGERS, filters=filters)


@bp.get("/automations/runs/<int:run_id>")
@login_required
def run_show(run_id):
    run = scoped_or_404(AutomationRun, run_id)
    return render("automations/run.html", "automations/_run.html", workspace=current_workspace(),
                  run=run, automation=run.automation, triggers_all=Automation.TRIGGERS,
                  run_url=url_for("automations.run_show", run_id=run.id))


@bp.get("/access-log")
@login_required
def access_log():
    ws = current_workspace()
    page = page_arg()
    entries, more = screens.audit_page(ws.id, page)
    return render("automations/access_log.html", "automations/_access_log.html", workspace=ws,
                  entries=entries, more=more, page=page)


@bp.app_template_filter("local_time")
def local_time(value, tz_name="UTC"):
    """A stored UTC time in the workspace's zone, to the minute; a dash for none."""
    if value is None:
        return "—"
    return value.replace(tzinfo=timezone.utc).astimezone(zone(tz_name)).strftime(
        "%Y-%m-%d %H:%M")


@bp.app_template_filter("trigger_label")
def trigger_label(automation) -> str:
    if automation.trigger == Automation.SCHEDULE:
        return f"Schedule: {automation.cron}"
    if automation.trigger == Automation.CHAT:
        return "Chat: " + Automation.CHAT_EVENTS.get(automation.chat_event, automation.chat_event)
    return Automation.TRIGGERS.get(automation.trigger, automation.trigger)
