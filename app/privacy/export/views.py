"""Export routes: ask for an export, watch it being prepared, download it from the e-mailed
link (signed in as the person who asked)."""

from flask import Blueprint, g, render_template, request, send_file, url_for

from app.accounts.service import BadLink
from app.accounts.sessions import login_required
from app.csrf import TokenForm
from app.errors import RuleError
from app.privacy.export import service
from app.privacy.export.models import ExportRequest
from app.rendering import go, render, render_form_errors

bp = Blueprint("export", __name__, url_prefix="/dashboard/privacy/export")

PAGE, SECTION = "privacy/page.html", "privacy/_export.html"


@bp.app_template_global()
def export_state() -> dict:
    """What the "Access and portability" section of the Privacy & data page shows."""
    membership = g.get("membership")
    return dict(export=service.shown_to(g.user, membership) if g.get("user") else None,
                is_owner=membership is not None and membership.is_owner,
                has_workspace=membership is not None, lifetime_days=service.LIFETIME.days)


def _context(**extra) -> dict:
    return dict(workspace=g.membership.workspace if g.membership else None, **extra)


@bp.get("")
@login_required
def export_section():
    # htmx asks for the section every 2 s while an export is prepared; a browser gets the page.
    return render(PAGE, SECTION, **_context())


def _ask(scope: str):
    form = TokenForm()
    try:
        service.request_export(g.user, g.membership, scope)
    except RuleError as err:
        return render_form_errors(PAGE, SECTION, form, error=err, **_context(export_form=form))
    if request.htmx:  # the section swaps in its new state: the export's progress
        return render(PAGE, SECTION, status=202, **_context())
    return go(url_for("privacy.privacy_page") + "#export")


@bp.post("/workspace")
@login_required
def export_workspace():
    return _ask(ExportRequest.WORKSPACE)


@bp.post("/personal")
@login_required
def export_personal():
    return _ask(ExportRequest.PERSONAL)


@bp.get("/download/<token>")
@login_required
def export_download(token: str):
    try:
        path, name = service.file_for(token, g.user)
    except BadLink as err:
        return render_template("privacy/export_link.html", problem=err.message), err.status
    response = send_file(path, mimetype="application/zip", as_attachment=True,
                         download_name=name, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
