"""Credential forms (secrets write-only, never shown again, never echoed on an error) and
automation forms (generated from a flow's Field schema)."""

import json

from wtforms import (
    BooleanField,
    Form,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, ValidationError

from app.automations.models import Automation, Credential
from app.csrf import TokenForm as FlaskForm  # our CSRF token in every form

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


# --- automations (staff set them up; forms generated from each flow's Field schema) -----------

TRIGGER_CHOICES = [SelectChoice(k, v) for k, v in Automation.TRIGGERS.items()]
CHAT_EVENT_CHOICES = [SelectChoice("", "— not a chat trigger —")] + [
    SelectChoice(k, v) for k, v in Automation.CHAT_EVENTS.items()]


class AutomationForm(FlaskForm):
    """What every automation has, whatever its flow: a name, a trigger and its retries.
    The flow's own settings come from config_form() beside it, in the same <form>."""

    # No validators: service.create_automation checks every field (these and the flow's) in
    # one pass, so all messages come back together and each is written once.
    name = StringField("Name", filters=strip)
    trigger = SelectField("Trigger", choices=TRIGGER_CHOICES, validate_choice=False)
    cron = StringField("Schedule (cron expression, in the workspace's time zone)", filters=strip)
    chat_event = SelectField("Chat event", choices=CHAT_EVENT_CHOICES, validate_choice=False)
    max_attempts = StringField("Attempts before a run counts as failed", filters=strip,
                               render_kw={"inputmode": "numeric"})


class AutomationSettingsForm(FlaskForm):
    # Checked by service.update_settings, which reports both fields at once.
    timezone = SelectField("Time zone of schedules and times", validate_choice=False)
    run_log_days = StringField("Keep run logs for (days)", filters=strip,
                               render_kw={"inputmode": "numeric"})


class TestRunForm(FlaskForm):
    dry_run = BooleanField("Dry run: log what would be sent, send nothing", default=True)


def credential_choices(field, workspace_id: int) -> list:
    """The workspace's credentials of the kinds the field accepts, by label and masked value
    only: the form never holds a secret."""
    query = Credential.select().where(Credential.workspace == workspace_id)
    if field.credential_kinds:
        query = query.where(Credential.kind.in_(list(field.credential_kinds)))
    choices = [SelectChoice("", "— choose a credential —" if field.required else "— none —")]
    for c in query.order_by(Credential.platform, Credential.label):
        choices.append(SelectChoice(str(c.id), f"{c.platform} · {c.label} ({c.masked})"))
    return choices


def _wtf_field(field, workspace_id: int):
    # No validators here: registry.validate_config is the one judge of a flow's settings,
    # and its errors are put beside these fields, so each message exists in one place.
    label = field.label + ("" if field.required else " (optional)")
    kw = {"label": label, "default": field.default, "description": field.help}
    kind = field.kind
    if kind in ("textarea", "template", "json_template"):
        kw["render_kw"] = {"class": "code", "rows": 6 if kind == "json_template" else 4,
                           "spellcheck": "false"}
        return TextAreaField(**kw)
    if kind == "select":
        return SelectField(choices=[SelectChoice(v, text) for v, text in field.options],
                           validate_choice=False, **kw)
    if kind == "credential":
        return SelectField(choices=credential_choices(field, workspace_id),
                           validate_choice=False, **kw)
    if kind in ("url", "email"):
        # Plain text, not type=url/email: these may hold a template such as
        # {{ event.visitor_email }}, which a browser would call invalid.
        kw["render_kw"] = {"spellcheck": "false", "class": "code"}
        return StringField(**kw)
    if kind == "int":
        kw["render_kw"] = {"inputmode": "numeric"}
        return StringField(**kw)
    return StringField(**kw)


def config_form(flow, workspace_id: int, formdata=None, data: dict | None = None):
    """A form for `flow`'s settings, built from its Field schema. Field names carry the
    prefix "cfg-" so that a flow field called "name" cannot clash with the automation's."""

    class ConfigForm(Form):
        pass

    for field in flow.fields:
        setattr(ConfigForm, field.name, _wtf_field(field, workspace_id))
    values = {k: ("" if v is None else v if isinstance(v, str) else
                  json.dumps(v) if isinstance(v, (dict, list)) else str(v))
              for k, v in (data or {}).items()}
    return ConfigForm(formdata=formdata, prefix="cfg", data=values or None)


def config_values(form) -> dict[str, str]:
    """The typed settings, as registry.validate_config takes them (strings, by field name)."""
    return {name: ("" if f.data is None else str(f.data)) for name, f in form._fields.items()}
