"""The dashboard's shell: its navigation, and its address leading to the inbox."""

from flask import Blueprint, redirect, url_for

from app.accounts.sessions import login_required

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

# Navigation, in order: (endpoint, its `area` argument or None, label). Settings and Team live
# in the accounts blueprint.
NAV = [
    ("chat.inbox", None, "Inbox"),
    ("sites.sites", None, "Sites"),
    ("chat.saved_replies", None, "Saved replies"),
    ("labels.labels_page", None, "Labels"),
    ("reports.reports_page", None, "Reports"),
    ("automations.automation_list", None, "Automations"),
    ("automations.credentials", None, "Credentials"),
    ("automations.access_log", None, "Access log"),
    ("billing.billing_page", None, "Billing"),
    ("privacy.privacy_page", None, "Privacy & data"),
    ("contact.request_list", None, "Requests"),
    ("accounts.settings", None, "Settings"),
    ("accounts.team", None, "Team"),
]
# Every dashboard page's layout reads it, whichever blueprint renders the page.
bp.record_once(lambda state: state.app.jinja_env.globals.update(dashboard_nav=NAV))


@bp.get("/")
@login_required
def home():
    return redirect(url_for("chat.inbox"))
