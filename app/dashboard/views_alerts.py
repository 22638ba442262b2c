"""The Alerts section of a person's settings (templates/accounts/_alerts.html, also a page of
its own for a browser without JavaScript), and the choices every dashboard page hands to
static/js/alerts.js (templates/accounts/_alert_prefs.html). See app/dashboard/alerts.py."""

from flask import Blueprint, flash, g, request, url_for
from wtforms import BooleanField, SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget

from app.accounts.sessions import login_required
from app.csrf import TokenForm
from app.dashboard import alerts
from app.errors import RuleError
from app.rendering import go, render, render_form_errors, wants_fragment

bp = Blueprint("alerts", __name__, url_prefix="/dashboard/settings")

PAGE, SECTION = "accounts/alerts.html", "accounts/_alerts.html"


class AlertsForm(TokenForm):
    notify = BooleanField("Show a desktop notification")
    sound = BooleanField("Play a short sound")
    # Ids as sent: the service judges them against the workspace's sites (a clear message
    # rather than WTForms' "not a valid choice").
    muted = SelectMultipleField("Mute these sites", coerce=str, validate_choice=False,
                                widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())


def _workspace() -> int | None:
    membership = g.get("membership")
    return membership.workspace_id if membership is not None else None


def _form(formdata=None) -> AlertsForm:
    """The form with the current workspace's sites to choose from: as stored, or as posted."""
    if formdata is None:
        now = alerts.settings_of(g.user.id)
        form = AlertsForm(formdata=None, notify=now.notify, sound=now.sound,
                          muted=[str(site_id) for site_id in sorted(now.muted)])
    else:
        form = AlertsForm(formdata)
    form.muted.choices = [(str(site_id), name) for site_id, name in alerts.sites_of(_workspace())]
    return form


@bp.app_template_global("alert_settings_form")
def alert_settings_form() -> AlertsForm:
    """For the settings page: the section's form as stored."""
    return _form()


@bp.app_template_global("alert_prefs")
def alert_prefs() -> dict | None:
    """For every dashboard page: who is looking and what they chose (None: nobody signed in)."""
    user = g.get("user")
    if user is None:
        return None
    now = alerts.settings_of(user.id)
    return {"user": user.id, "sound": now.sound, "notify": now.notify,
            "muted": " ".join(str(site_id) for site_id in sorted(now.muted))}


@bp.app_template_test("opening")
def opening(message, conversation) -> bool:
    """`message is opening(conversation)`: in templates/chat/_message.html (data-opens)."""
    return alerts.opens_conversation(message, conversation)


@bp.get("/alerts")
@login_required
def alerts_page():
    return render(PAGE, SECTION, alerts_form=_form())


@bp.post("/alerts")
@login_required
def alerts_update():
    form = _form(request.form)
    if not form.validate():
        return render_form_errors(PAGE, SECTION, form, alerts_form=form)
    try:
        alerts.save(g.user.id, _workspace(), sound=bool(form.sound.data),
                    notify=bool(form.notify.data), muted=form.muted.data or [])
    except RuleError as err:
        return render_form_errors(PAGE, SECTION, form, error=err, alerts_form=form)
    done = "Alerts saved."
    if not wants_fragment():
        flash(done, "success")
        return go(url_for("accounts.settings") + "#alerts")
    # The section, and the page's copy of the choices (out of band) that alerts.js reads.
    return render(PAGE, SECTION, alerts_form=_form(), alerts_done=done, prefs_oob=True)
