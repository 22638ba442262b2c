"""Dev-only outbox page: with no SMTP configured, this is where the demo's e-mails are read.
It holds every workspace's sign-in, reset and invitation links, so only staff may open it
(the demo account is staff), and only in development: production never registers it."""

import re

from flask import Blueprint, abort, g
from markupsafe import Markup, escape

from app.accounts.models import Invitation, Membership, User
from app.accounts.sessions import login_required
from app.mail.models import OutboundEmail
from app.rendering import render
from app.staff.service import record

bp = Blueprint("mail", __name__, url_prefix="/dev")

URL = re.compile(r"https?://[^\s<>\"']+")
SHOWN = 50


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


def workspaces_reached(addresses: set[str]) -> set[int]:
    """The workspaces whose members or invitees these e-mails went to: their access logs
    record that staff read them, as for any other look at a customer's data."""
    members = (Membership.select(Membership.workspace).join(User)
               .where(User.email.in_(list(addresses))))
    invited = Invitation.select(Invitation.workspace).where(Invitation.email.in_(list(addresses)))
    return {m.workspace_id for m in members} | {i.workspace_id for i in invited}


@bp.get("/outbox")
@login_required
def outbox():
    # Anyone else signed in is told nothing exists here, as in the staff area.
    if not g.user.is_staff:
        abort(404)
    emails = list(OutboundEmail.select().order_by(OutboundEmail.id.desc()).limit(SHOWN))
    for workspace_id in sorted(workspaces_reached({e.to.lower() for e in emails})):
        record(workspace_id, "read its e-mails in the development outbox")
    return render("mail/outbox.html", emails=emails, linkify=linkify)
