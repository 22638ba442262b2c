"""Restriction, objection and retention routes: the owner's "Restrict processing" switch, a
member's choice of e-mails, one-click unsubscribe (RFC 8058) and the public retention page."""

from flask import Blueprint, abort, g, url_for

from app.accounts.sessions import login_required, owner_required, workspace_id
from app.extensions import csrf
from app.privacy.restriction import objection, retention, service
from app.rendering import go, render
from app.security import error_page

bp = Blueprint("restriction", __name__)
# The one-click door of the List-Unsubscribe header: mail providers POST to it with no
# cookie and no form, so the secret token in its URL is its credential, not a CSRF token.
# Registered beside `bp` (create_app registers `bp` only).
unsubscribe = csrf.exempt(Blueprint("unsubscribe", __name__))
bp.record_once(lambda state: state.app.register_blueprint(unsubscribe))


@bp.app_errorhandler(service.ProcessingRestricted)
def processing_restricted(err):
    """Any way of running a restricted workspace's automation (a staff test run included)
    answers the same page."""
    return error_page(err.status, "Processing is restricted", err.message)


# --- Privacy & data: the page's sections --------------------------------------------------------


@bp.app_template_global()
def restriction_panel():
    membership = g.get("membership")
    if membership is None:
        return None
    return {"workspace": membership.workspace, "is_owner": membership.is_owner}


@bp.app_template_global()
def objection_panel():
    user = g.get("user")
    if user is None:
        return None
    stopped = objection.objections_of(user.email)
    return {"kinds": [(k, k.template in stopped) for k in objection.NON_ESSENTIAL],
            "essential": [k for k in objection.MAIL_KINDS.values() if k.essential]}


@bp.post("/dashboard/privacy/restriction")
@owner_required
def restriction_set():
    service.restrict(workspace_id(), g.user)
    return go(url_for("privacy.privacy_page") + "#restriction")


@bp.post("/dashboard/privacy/restriction/lift")
@owner_required
def restriction_lift():
    service.lift(workspace_id(), g.user)
    return go(url_for("privacy.privacy_page") + "#restriction")


def _kind_or_404(kind: str):
    found = objection.kind_of(kind)
    if found is None or found.essential:
        abort(404)
    return found


@bp.post("/dashboard/privacy/email/<kind>/stop")
@login_required
def email_stop(kind):
    objection.object_to(g.user.email, _kind_or_404(kind).template)
    return go(url_for("privacy.privacy_page") + "#objection")


@bp.post("/dashboard/privacy/email/<kind>/start")
@login_required
def email_start(kind):
    objection.withdraw(g.user.email, _kind_or_404(kind).template)
    return go(url_for("privacy.privacy_page") + "#objection")


# --- one-click unsubscribe ----------------------------------------------------------------------


def _link_or_404(token: str):
    found = objection.read_token(token)
    if found is None:
        abort(404)
    return found


@unsubscribe.get("/unsubscribe/<token>")
def unsubscribe_page(token):
    """A GET never unsubscribes (mail scanners open links): it shows the button that does."""
    email, kind = _link_or_404(token)
    return render("privacy/restriction_unsubscribe.html", email=email, kind=kind, token=token,
                  done=False)


@unsubscribe.post("/unsubscribe/<token>")
def unsubscribe_confirm(token):
    """RFC 8058: the POST unsubscribes at once, no login, no confirmation page. The body
    ("List-Unsubscribe=One-Click" from a mail provider, or our page's button) is not needed."""
    email, kind = _link_or_404(token)
    objection.object_to(email, kind.template)
    return render("privacy/restriction_unsubscribe.html", email=email, kind=kind, token=token,
                  done=True)


# --- the public retention page ------------------------------------------------------------------


@bp.get("/privacy/retention")
def retention_page():
    return render("privacy/retention.html", rows=retention.RETENTION)

