"""The site page's business hours card: the weekly schedule and closed days an owner edits
(app/widget/hours.py keeps and reads them). The widget's side is its away mode
(app/widget/pages.py, app/chat/wire.py)."""

from flask import Blueprint, url_for
from wtforms import StringField, TextAreaField
from wtforms.validators import Length

from app.accounts.models import Workspace
from app.accounts.sessions import login_required, owner_required, scoped_or_404
from app.chat.forms import strip
from app.csrf import TokenForm
from app.rendering import render, render_form_errors
from app.widget import hours
from app.widget.models import Site

bp = Blueprint("hours", __name__, url_prefix="/dashboard")

DAY_HELP = "Hours like 09:00-17:00; several with commas; empty: closed."


def day_field(day: str) -> StringField:
    return StringField(day, validators=[Length(max=200, message="Keep a day's hours to 200 "
                                               "characters or fewer.")], filters=strip)


class HoursForm(TokenForm):
    # One field a weekday, named as app/widget/hours.py names them (its errors' fields).
    monday = day_field("Monday")
    tuesday = day_field("Tuesday")
    wednesday = day_field("Wednesday")
    thursday = day_field("Thursday")
    friday = day_field("Friday")
    saturday = day_field("Saturday")
    sunday = day_field("Sunday")
    closed_days = TextAreaField("Closed days", validators=[Length(max=8000)],
                                render_kw={"rows": 3})


DAY_FIELDS = tuple(day.lower() for day in hours.DAYS)


def hours_form(site: Site, formdata=None) -> HoursForm:
    """The editor, filled from the site's stored schedule (or from the post)."""
    schedule = hours.load(site.id)
    weekly = schedule.weekly or ((),) * 7
    return HoursForm(formdata=formdata, closed_days="\n".join(
        day.isoformat() for day in sorted(schedule.closed)),
        **{name: hours.shown_day(intervals) for name, intervals in zip(DAY_FIELDS, weekly, strict=True)})


@bp.app_template_global("site_hours")
def site_hours(site: Site, form: HoursForm | None = None) -> dict:
    """What the card shows: the editor, whether a schedule is set (and a weekly one), the zone
    its times are read in, the chat's state now and where to post."""
    schedule = hours.schedule_of(site)
    return {"form": form or hours_form(site), "days": DAY_FIELDS,
            "set": not schedule.always_open, "weekly": schedule.weekly is not None,
            "status": hours.status(site), "zone": Workspace.get_by_id(site.workspace_id).timezone,
            "action": url_for("hours.hours_update", site_id=site.id)}


def card(site, form=None, **context):
    return render("widget/hours.html", "widget/_hours.html", site=site, hours_form=form,
                  **context)


@bp.get("/sites/<int:site_id>/hours")
@login_required
def hours_show(site_id):
    return card(scoped_or_404(Site, site_id))


@bp.post("/sites/<int:site_id>/hours")
@owner_required
def hours_update(site_id):
    site = scoped_or_404(Site, site_id)
    form = HoursForm()
    if not form.validate_on_submit():
        return render_form_errors("widget/hours.html", "widget/_hours.html", form, site=site,
                                  hours_form=form)
    try:
        hours.save(site, [form[name].data or "" for name in DAY_FIELDS], form.closed_days.data)
    except hours.HoursError as err:
        return render_form_errors("widget/hours.html", "widget/_hours.html", form, error=err,
                                  site=site, hours_form=form)
    return card(site, saved=True)
