"""Public policy pages."""

from flask import Blueprint

from app.rendering import render

bp = Blueprint("policies", __name__)


@bp.get("/privacy")
def privacy():
    return render("policies/privacy.html")
