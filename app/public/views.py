"""Pages anyone can see, and the health check the hosting platform asks."""

from flask import Blueprint, jsonify

from app import background, db
from app.rendering import render

bp = Blueprint("public", __name__)


@bp.get("/")
def home():
    return render("public/home.html")


@bp.get("/privacy")
def privacy():
    return render("public/privacy.html")


@bp.get("/healthz")
def healthz():
    db_ok = db.answers()
    queue_ok = background.queue_answers()
    ok = db_ok and queue_ok
    body = {"status": "ok" if ok else "failing", "database": db_ok, "queue": queue_ok}
    return jsonify(body), 200 if ok else 503
