"""Dev-only outbox page: with no SMTP configured, this is where the demo's e-mails are read."""

import re

from flask import Blueprint
from markupsafe import Markup, escape

from app.models import OutboundEmail
from app.rendering import render

bp = Blueprint("mail", __name__, url_prefix="/dev")

URL = re.compile(r"https?://[^\s<>\"']+")


def linkify(text: str) -> Markup:
    """Escape the text, then turn its URLs into links (the demo's verification links)."""
    out, last = [], 0
    for m in URL.finditer(text):
        out.append(escape(text[last:m.start()]))
        url = escape(m.group(0))
        out.append(Markup(f'<a href="{url}">{url}</a>'))
        last = m.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


@bp.get("/outbox")
def outbox():
    emails = OutboundEmail.select().order_by(OutboundEmail.id.desc()).limit(50)
    return render("mail/outbox.html", emails=emails, linkify=linkify)
