"""Routes for sign-up, log-in, password and e-mail changes, settings and the team page."""

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, request, session, url_for

from app.accounts import alerts, service, sessions
from app.accounts.forms import (
    EmailChangeForm,
    EmptyForm,
    ForgotForm,
    InviteForm,
    LoginForm,
    PasswordChangeForm,
    ProfileForm,
    ResetForm,
    SignupForm,
    WorkspaceForm,
)
from app.accounts.models import Invitation, Membership, UserSession
from app.accounts.service import AccountError
from app.accounts.sessions import login_required, owner_required
from app.errors import RuleError
from app.extensions import limiter
from app.paging import whole_number
from app.rendering import go, render, render_form_errors, wants_fragment

bp = Blueprint("accounts", __name__)
# The form behind every post button (log out, delete, pause…), on any blueprint's page.
bp.add_app_template_global(EmptyForm, "empty_form")


def safe_next(target: str | None) -> str:
    # Only paths on this site: an open redirect after log-in is a phishing tool.
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("dashboard.home")


def reject_bot(form):
    if form.is_bot:
        abort(400)


# --- sign-up ---------------------------------------------------------------------------


@bp.get("/signup")
def signup_form():
    return render("accounts/signup.html", "accounts/_signup_form.html", form=SignupForm())


@bp.post("/signup")
@limiter.limit("10 per hour")
def signup():
    form = SignupForm()
    reject_bot(form)
    if not form.validate_on_submit():
        return render_form_errors("accounts/signup.html", "accounts/_signup_form.html", form,
                                  form=form)
    service.sign_up(form.name.data, form.email.data, form.password.data)
    return render("accounts/check_inbox.html", "accounts/_check_inbox.html", email=form.email.data)


@bp.get("/verify/<token>")
def verify_email(token):
    try:
        service.verify_email(token)
    except AccountError as err:
        return render("accounts/link_problem.html", status=err.status, message=err.message)
    flash("Your e-mail address is confirmed. You can log in now.", "success")
    return redirect(url_for("accounts.login_form"), code=303)


# --- log-in and log-out ----------------------------------------------------------------------


@bp.get("/login")
def login_form():
    if g.user is not None:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    return render("accounts/login.html", "accounts/_login_form.html", form=form)


@bp.post("/login")
@limiter.limit("30 per minute;200 per hour")
def login():
    form = LoginForm()
    reject_bot(form)
    if not form.validate_on_submit():
        return render_form_errors("accounts/login.html", "accounts/_login_form.html", form,
                                  form=form)
    try:
        user = service.authenticate(form.email.data, form.password.data, request.remote_addr or "")
    except AccountError as err:
        form.password.data = ""
        return render_form_errors("accounts/login.html", "accounts/_login_form.html", form,
                                  error=err, form=form)
    sessions.login_user(user)
    alerts.signed_in(user, request.user_agent.string or "")
    return go(safe_next(form.next.data))


@bp.post("/logout")
def logout():
    EmptyForm()  # CSRF is checked globally; the form only documents the token
    sessions.logout_user()
    flash("You are logged out.", "info")
    return go(url_for("accounts.login_form"))


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere():
    service.log_out_everywhere(g.user)
    sessions.logout_user()
    flash("You are logged out on every device, this one included.", "info")
    return go(url_for("accounts.login_form"))


# --- forgotten password -----------------------------------------------------------------------


@bp.get("/password/forgot")
def forgot_form():
    return render("accounts/forgot.html", "accounts/_forgot_form.html", form=ForgotForm())


@bp.post("/password/forgot")
@limiter.limit("5 per 15 minutes")
def forgot():
    form = ForgotForm()
    reject_bot(form)
    if not form.validate_on_submit():
        return render_form_errors("accounts/forgot.html", "accounts/_forgot_form.html", form,
                                  form=form)
    service.request_password_reset(form.email.data)
    return render("accounts/check_inbox.html", "accounts/_check_inbox.html", email=form.email.data,
                  reset=True)


@bp.get("/password/reset/<token>")
def reset_form(token):
    try:
        service.user_for_reset(token)
    except AccountError as err:
        return render("accounts/link_problem.html", status=err.status, message=err.message)
    return render("accounts/reset.html", "accounts/_reset_form.html", form=ResetForm(), token=token)


@bp.post("/password/reset/<token>")
@limiter.limit("10 per 15 minutes")
def reset(token):
    form = ResetForm()
    if not form.validate_on_submit():
        return render_form_errors("accounts/reset.html", "accounts/_reset_form.html", form,
                                  form=form, token=token)
    try:
        service.reset_password(token, form.password.data)
    except AccountError as err:
        return render("accounts/link_problem.html", status=err.status, message=err.message)
    sessions.logout_user()
    flash("Your password is changed. Log in with the new one.", "success")
    return go(url_for("accounts.login_form"))


# --- settings (profile, password, e-mail) ------------------------------------------------------


def settings_answer(section: str, form, error: AccountError | None = None, failed=False, **flags):
    """The settings page after a post to one of its sections: just that section's partial for
    htmx, or the whole page (the other forms and the session list built only then).
    `done=section` marks which section succeeded, so only that one says so; `failed` (the form
    did not validate) or `error` (the service refused) answers with the messages beside fields."""
    fragment = f"accounts/_{section}_form.html"
    context = dict(flags)
    if not wants_fragment():
        context.update({
            "user_sessions": list(UserSession.select().where(UserSession.user == g.user)
                                  .order_by(UserSession.last_seen_at.desc())),
            "profile_form": ProfileForm(name=g.user.name, formdata=None),
            "password_form": PasswordChangeForm(formdata=None),
            "email_form": EmailChangeForm(formdata=None),
            f"{section}_form": form,
        })
    if failed or error is not None:
        return render_form_errors("accounts/settings.html", fragment, form, error=error, form=form,
                                  **context)
    return render("accounts/settings.html", fragment, form=form, **context)


@bp.get("/dashboard/settings")
@login_required
def settings():
    return settings_answer("profile", ProfileForm(name=g.user.name, formdata=None))


@bp.post("/dashboard/settings/name")
@login_required
def name_update():
    form = ProfileForm()
    if not form.validate_on_submit():
        return settings_answer("profile", form, failed=True)
    service.change_name(g.user, form.name.data)
    return settings_answer("profile", form, done="profile")


@bp.post("/dashboard/settings/password")
@login_required
def password_update():
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return settings_answer("password", form, failed=True)
    try:
        service.change_password(g.user, form.current_password.data, form.new_password.data)
    except AccountError as err:
        return settings_answer("password", form, err)
    return settings_answer("password", PasswordChangeForm(formdata=None), done="password")


@bp.post("/dashboard/settings/email")
@login_required
def email_update():
    form = EmailChangeForm()
    if not form.validate_on_submit():
        return settings_answer("email", form, failed=True)
    try:
        service.request_email_change(g.user, form.new_email.data, form.current_password.data)
    except AccountError as err:
        return settings_answer("email", form, err)
    return settings_answer("email", EmailChangeForm(formdata=None), done="email",
                           sent_to=form.new_email.data)


@bp.post("/dashboard/settings/sessions/<int:session_id>/end")
@login_required
def session_end(session_id):
    ended = UserSession.delete().where((UserSession.id == session_id)
                                       & (UserSession.user == g.user)).execute()
    if not ended:
        abort(404)
    sessions.forget_user(g.user.id)  # the ended device's replies stop at once
    if g.session_row.id == session_id:
        session.clear()
        return go(url_for("accounts.login_form"))
    return go(url_for("accounts.settings") + "#sessions-title")


@bp.get("/settings/email/confirm/<token>")
def confirm_email_change(token):
    try:
        user = service.confirm_email_change(token)
    except AccountError as err:
        return render("accounts/link_problem.html", status=err.status, message=err.message)
    flash(f"Your e-mail address is now {user.email}.", "success")
    return redirect(url_for("accounts.settings" if g.user else "accounts.login_form"), code=303)


# --- team ----------------------------------------------------------------------------------------


def team_context(**replace):
    workspace = g.membership.workspace
    context = {
        "workspace": workspace,
        "members": list(workspace.members()),
        "invitations": list(Invitation.pending_for(workspace).order_by(Invitation.created_at.desc())),
        "invite_form": InviteForm(formdata=None),
        "workspace_form": WorkspaceForm(name=workspace.name, formdata=None),
        "action_form": EmptyForm(),
    }
    context.update(replace)
    return context


@bp.get("/dashboard/team")
@login_required
def team():
    if g.membership is None:
        abort(404)
    return render("accounts/team.html", **team_context())


@bp.post("/dashboard/team/invitations")
@owner_required
def invitation_create():
    form = InviteForm()
    page, fragment = "accounts/team.html", "accounts/_team.html"
    if not form.validate_on_submit():
        return render_form_errors(page, fragment, form, **team_context(invite_form=form))
    try:
        service.invite(g.membership.workspace, g.user, form.email.data, form.role.data)
    except RuleError as err:  # the account's rules, and the plan's team size
        return render_form_errors(page, fragment, form, error=err, **team_context(invite_form=form))
    return render(page, fragment, invited=form.email.data, **team_context())


@bp.post("/dashboard/team/invitations/<int:invitation_id>/revoke")
@owner_required
def invitation_revoke(invitation_id):
    try:
        service.revoke_invitation(g.membership.workspace, invitation_id)
    except AccountError as err:
        abort(err.status)
    return render("accounts/team.html", "accounts/_team.html", **team_context())


@bp.post("/dashboard/team/members/<int:membership_id>/remove")
@owner_required
def member_remove(membership_id):
    try:
        service.remove_member(g.membership.workspace, g.user, membership_id)
    except AccountError as err:  # no form to stand beside: the message is the page's `problem`
        return render_form_errors("accounts/team.html", "accounts/_team.html", error=err,
                                  **team_context())
    return render("accounts/team.html", "accounts/_team.html", **team_context())


@bp.post("/dashboard/team/name")
@owner_required
def workspace_rename():
    form = WorkspaceForm()
    if not form.validate_on_submit():
        return render_form_errors("accounts/team.html", "accounts/_team.html", form,
                                  **team_context(workspace_form=form))
    service.rename_workspace(g.membership.workspace, form.name.data)
    return render("accounts/team.html", "accounts/_team.html", **team_context())


@bp.post("/dashboard/workspace")
@login_required
def workspace_switch():
    chosen = whole_number(request.form.get("workspace_id", ""))  # None: no workspace
    if not Membership.select().where(
            (Membership.user == g.user) & (Membership.workspace == chosen)).exists():
        abort(404)
    session["ws"] = chosen
    return go(url_for("dashboard.home"))


# --- invitations (the link a teammate receives) --------------------------------------------


@bp.get("/invitations/<token>")
def invitation_show(token):
    try:
        invitation = service.invitation_for(token)
    except AccountError as err:
        return render("accounts/link_problem.html", status=err.status, message=err.message)
    return render("accounts/invitation.html", invitation=invitation, token=token, form=EmptyForm())


@bp.post("/invitations/<token>")
@login_required
def invitation_accept(token):
    try:
        membership = service.accept_invitation(token, g.user)
    except AccountError as err:
        return render("accounts/link_problem.html", status=err.status, message=err.message)
    session["ws"] = membership.workspace_id
    flash(f"You joined {membership.workspace.name}.", "success")
    return go(url_for("dashboard.home"))
