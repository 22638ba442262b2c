"""The contact page."""

from flask import Blueprint

from app.rendering import render

bp = Blueprint("contact", __name__)


@bp.get("/contact")
def contact_form():
    return render("contact/contact.html")
