"""The deletion forms: each asks for the password again."""

from wtforms import PasswordField
from wtforms.validators import DataRequired

from app.csrf import TokenForm


class DeleteWorkspaceForm(TokenForm):
    password = PasswordField("Your password", id="delete_workspace_password",
                             validators=[DataRequired("Enter your password to confirm.")])


class DeleteAccountForm(TokenForm):
    password = PasswordField("Your password", id="delete_account_password",
                             validators=[DataRequired("Enter your password to confirm.")])
