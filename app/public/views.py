"""Pages anyone can see, the hosting platform's health check, and app-wide template values."""

from flask import Blueprint, current_app, jsonify

from app import background, db
from app.billing import plans
from app.chat import files
from app.rendering import render

bp = Blueprint("public", __name__)

# The file pickers' `accept` list, for the widget's compose form and the dashboard's reply
# form alike: one value made from files.ALLOWED, so no template spells the types out. Set on
# the app's Jinja globals, which the chat's stream renderer copies (app/chat/render.py).
bp.add_app_template_global(files.ACCEPT, "file_accept")


@bp.app_template_global()
def contact_email() -> str:
    """The one address people are told to write to (LUMNAR_CONTACT_EMAIL): templates call
    this rather than spell an address, so a deploy changes it in one setting."""
    return current_app.config["CONTACT_EMAIL"]


@bp.get("/")
def home():
    return render("public/home.html")


@bp.get("/pricing")
def pricing():
    return render("public/pricing.html", plans=plans, shown=[plans.FREE, *plans.FOR_SALE])


@bp.get("/healthz")
def healthz():
    db_ok = db.answers()
    queue_ok = background.queue_answers()
    ok = db_ok and queue_ok
    body = {"status": "ok" if ok else "failing", "database": db_ok, "queue": queue_ok}
    return jsonify(body), 200 if ok else 503
