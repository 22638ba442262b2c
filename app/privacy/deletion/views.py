"""Deletion routes: schedule a workspace's or an account's deletion (password again), cancel
it while its grace period runs, leave a workspace."""

from flask import Blueprint, g, url_for

from app.accounts.sessions import login_required
from app.csrf import TokenForm
from app.errors import RuleError
from app.privacy.deletion import service
from app.privacy.deletion.forms import DeleteAccountForm, DeleteWorkspaceForm
from app.rendering import go, render_form_errors

bp = Blueprint("deletion", __name__, url_prefix="/dashboard/privacy")

PAGE = "privacy/page.html"
SECTION = "#deletion"


@bp.app_template_global()
def deletion_state() -> dict | None:
    """What the Delete section and the dashboard's banner show."""
    user, membership = g.get("user"), g.get("membership")
    if user is None:
        return None
    workspace = membership.workspace if membership else None
    return dict(
        account=service.pending_for_account(user.id),
        workspace=service.pending_for_workspace(workspace.id) if workspace else None,
        is_owner=membership is not None and membership.is_owner,
        membership=membership,
        owned=service.sole_owned(user.id),
        may_leave=membership is not None and service.may_leave(membership),
        workspace_form=DeleteWorkspaceForm(formdata=None),
        account_form=DeleteAccountForm(formdata=None),
        grace_days=service.GRACE.days)


def _failed(err: RuleError, form):
    name = "workspace_form" if isinstance(form, DeleteWorkspaceForm) else "account_form"
    return render_form_errors(PAGE, None, form, error=err, **{name: form},
                              workspace=g.membership.workspace if g.membership else None)


@bp.post("/delete-workspace")
@login_required
def delete_workspace():
    form = DeleteWorkspaceForm()
    if not form.validate_on_submit():
        return _failed(None, form)
    if g.membership is None:
        return _failed(RuleError("You have no workspace to delete.", status=409), form)
    try:
        service.request_workspace_deletion(g.membership, g.user, form.password.data)
    except RuleError as err:
        return _failed(err, form)
    return go(url_for("privacy.privacy_page") + SECTION)


@bp.post("/delete-account")
@login_required
def delete_account():
    form = DeleteAccountForm()
    if not form.validate_on_submit():
        return _failed(None, form)
    try:
        service.request_account_deletion(g.user, form.password.data)
    except RuleError as err:
        return _failed(err, form)
    return go(url_for("privacy.privacy_page") + SECTION)


@bp.post("/deletion/<int:request_id>/cancel")
@login_required
def cancel(request_id):
    form = TokenForm()
    try:
        service.cancel(request_id, g.user)
    except RuleError as err:
        return render_form_errors(PAGE, None, form, error=err,
                                  workspace=g.membership.workspace if g.membership else None)
    return go(url_for("privacy.privacy_page") + SECTION)


@bp.post("/leave")
@login_required
def leave():
    form = TokenForm()
    if g.membership is None:
        return go(url_for("privacy.privacy_page"))
    try:
        service.leave_workspace(g.membership)
    except RuleError as err:
        return render_form_errors(PAGE, None, form, error=err,
                                  workspace=g.membership.workspace)
    return go(url_for("dashboard.home"))
