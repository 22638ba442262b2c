"""Account forms. Validation lives here so full posts, htmx posts and inline checks agree."""

from wtforms import EmailField, HiddenField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, ValidationError

from app.accounts import passwords
from app.accounts.models import Membership
from app.csrf import TokenForm as FlaskForm  # our CSRF token in every form


def strong_password(form, field):
    issue = passwords.problem(field.data or "")
    if issue:
        raise ValidationError(issue)


def empty_honeypot(form, field):
    # People never see this field (CSS hides it); a bot that fills every input does.
    if field.data:
        raise ValidationError("This form could not be accepted.")


def email_field(label="E-mail"):
    return EmailField(
        label,
        validators=[
            DataRequired("Enter your e-mail address."),
            Length(max=254, message="That address is too long."),
            Email("Enter a valid e-mail address, like name@example.com.", check_deliverability=False),
        ],
        filters=[lambda v: v.strip().lower() if isinstance(v, str) else v],
    )


def name_field(label="Your name"):
    return StringField(
        label,
        validators=[DataRequired("Enter a name."), Length(max=120, message="Use at most 120 characters.")],
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
    )


class PublicForm(FlaskForm):
    website = StringField("Leave this field empty", validators=[empty_honeypot])

    @property
    def is_bot(self) -> bool:
        return bool(self.website.data)


class SignupForm(PublicForm):
    name = name_field()
    email = email_field()
    password = PasswordField("Password (at least 10 characters)", validators=[strong_password])


class LoginForm(PublicForm):
    email = email_field()
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])
    next = HiddenField()


class ForgotForm(PublicForm):
    email = email_field()


class ResetForm(FlaskForm):
    password = PasswordField("New password (at least 10 characters)", validators=[strong_password])


class ProfileForm(FlaskForm):
    name = name_field()


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired("Enter your current password.")])
    new_password = PasswordField("New password (at least 10 characters)", validators=[strong_password])


class EmailChangeForm(FlaskForm):
    new_email = email_field("New e-mail")
    # Its own id: the settings page also shows PasswordChangeForm, whose field has the same
    # name, and two inputs with one id leave the second without a label.
    current_password = PasswordField("Current password", id="email_current_password",
                                     validators=[DataRequired("Enter your current password.")])


class InviteForm(FlaskForm):
    email = email_field("Teammate's e-mail")
    # SelectChoice, not (value, label) tuples: WTForms 3.3 deprecates tuples (gone in 3.4).
    role = SelectField("Role", choices=[SelectChoice(Membership.AGENT, "Agent"),
                                        SelectChoice(Membership.OWNER, "Owner")])


class WorkspaceForm(FlaskForm):
    name = name_field("Workspace name")


class EmptyForm(FlaskForm):
    """For buttons that only need the CSRF token (log out, remove, revoke)."""
