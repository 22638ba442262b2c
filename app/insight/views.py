"""Usage insight's pages: the objection switch in a person's settings, and the staff charts."""

from flask import Blueprint, flash, g, render_template, url_for

from app.accounts.sessions import login_required
from app.automations.screens import chart
from app.insight import service
from app.rendering import go, wants_fragment
from app.staff.service import require_staff

bp = Blueprint("insight", __name__)

DAYS = 30


def settings_answer(done: str):
    """After a change: the section itself for htmx, else back to the settings page."""
    if wants_fragment():
        return render_template("insight/_settings.html", insight_done=done)
    flash(done, "success")
    return go(url_for("accounts.settings"))


@bp.post("/dashboard/settings/insight/objection")
@login_required
def objection_create():
    service.object_to_counting(g.user.id)
    return settings_answer("Your visits are no longer counted.")


@bp.post("/dashboard/settings/insight/objection/withdraw")
@login_required
def objection_withdraw():
    service.withdraw_objection(g.user.id)
    return settings_answer("Your visits are counted again.")


@bp.get("/staff/insight")
def staff_charts():
    require_staff()  # the staff area's one rule: anyone else finds nothing here
    pages = chart(service.per_day(service.PAGE, DAYS), DAYS)
    events = chart(service.per_day(service.EVENT, DAYS), DAYS)
    return render_template("insight/staff.html", days=DAYS, pages=pages, events=events,
                           top_pages=service.top(service.PAGE, DAYS),
                           top_events=service.top(service.EVENT, DAYS),
                           event_names=service.EVENTS)
