"""Dashboard pages. Areas still to come say so plainly instead of pretending."""

from flask import Blueprint, abort, g, redirect, url_for

from app.accounts.sessions import login_required
from app.rendering import render

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

# Navigation, in order: (endpoint, its `area` argument or None, label). Settings and Team live
# in the accounts blueprint.
NAV = [
    ("chat.inbox", None, "Inbox"),
    ("sites.sites", None, "Sites"),
    ("chat.saved_replies", None, "Saved replies"),
    ("automations.automation_list", None, "Automations"),
    ("automations.credentials", None, "Credentials"),
    ("automations.access_log", None, "Access log"),
    ("billing.billing_page", None, "Billing"),
    ("dashboard.area", "privacy", "Privacy & data"),
    ("contact.request_list", None, "Requests"),
    ("accounts.settings", None, "Settings"),
    ("accounts.team", None, "Team"),
]
# Every dashboard page's layout reads it, whichever blueprint renders the page.
bp.record_once(lambda state: state.app.jinja_env.globals.update(dashboard_nav=NAV))

COMING = {
    "privacy": ("Privacy & data", "Here you will download a copy of your data, correct it, "
                "delete it or restrict how we use it. Until this page is ready, write to us from "
                "the contact page and we will do it for you."),
}


@bp.get("/")
@login_required
def home():
    return redirect(url_for("chat.inbox"))


@bp.get("/<area>")
@login_required
def area(area):
    if area not in COMING:
        abort(404)
    title, text = COMING[area]
    return render("dashboard/coming.html", "dashboard/_coming.html", area=area, title=title,
                  text=text, workspace=g.membership.workspace if g.membership else None)
