"""The "Privacy & data" page: one section per right, each section a fragment of its own."""

from flask import Blueprint, g

from app.accounts.sessions import login_required
from app.rendering import render

bp = Blueprint("privacy", __name__)


@bp.get("/dashboard/privacy")
@login_required
def privacy_page():
    # Each section's state comes from its own template global (registered by its part of
    # app/privacy), so this page needs no knowledge of them.
    return render("privacy/page.html", workspace=g.membership.workspace if g.membership else None)
