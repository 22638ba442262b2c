"""Credential forms: secrets are write-only, never shown again, never echoed on an error."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from app.automations.models import Credential

strip = [lambda v: v.strip() if isinstance(v, str) else v]


class CredentialForm(FlaskForm):
    platform = StringField("Platform", validators=[DataRequired("Name the platform, e.g. HubSpot."),
                                                   Length(max=80)], filters=strip)
    label = StringField("Label", validators=[DataRequired("Give it a label you will recognise."),
                                             Length(max=120)], filters=strip)
    kind = SelectField("Kind", choices=[SelectChoice(k, v) for k, v in Credential.KINDS.items()])
    username = StringField("Username (for a username and password)", validators=[Length(max=200)],
                           filters=strip)
    secret = PasswordField("Secret: token, password or webhook URL", validators=[Length(max=4000)])
    secret2 = PasswordField("Refresh token (for an OAuth pair)", validators=[Length(max=4000)])
    secret_map = TextAreaField("Other secrets, one “name = value” a line", validators=[Length(max=8000)])

    def secrets(self) -> dict:
        """The secrets this kind needs, from the fields; ValidationError beside a field if not."""
        kind, secret = self.kind.data, self.secret.data or ""
        if kind == "secret_map":
            pairs = {}
            for line in (self.secret_map.data or "").splitlines():
                if not line.strip():
                    continue
                name, sep, value = line.partition("=")
                if not sep or not name.strip() or not value.strip():
                    self.secret_map.errors = ["Write each line as name = value."]
                    raise ValidationError
                pairs[name.strip()] = value.strip()
            if not pairs:
                self.secret_map.errors = ["Add at least one name = value line."]
                raise ValidationError
            return pairs
        if not secret:
            self.secret.errors = ["Enter the secret. It is encrypted at once and never shown again."]
            raise ValidationError
        if kind == "login":
            if not self.username.data:
                self.username.errors = ["Enter the username."]
                raise ValidationError
            return {"username": self.username.data, "password": secret}
        if kind == "oauth":
            return {"access_token": secret, "refresh_token": self.secret2.data or ""}
        if kind == "webhook_url":
            if not secret.startswith("https://"):
                self.secret.errors = ["A webhook URL starts with https://."]
                raise ValidationError
            return {"url": secret}
        return {"token": secret}
