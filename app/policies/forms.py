"""The staff's form for publishing a policy version."""

from wtforms import BooleanField, DateField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import Optional

from app.csrf import TokenForm as FlaskForm
from app.policies.models import PolicyVersion


class PublishForm(FlaskForm):
    # Judged by the service (publish): an unknown kind is refused there, beside this field.
    kind = SelectField("Policy", choices=[SelectChoice(k, v) for k, v in PolicyVersion.KINDS.items()],
                       validate_choice=False)
    text = TextAreaField("Text (Markdown; raw HTML is shown as text)")
    summary = TextAreaField("What changes (shown on the policy page, in the e-mail and the "
                            "dashboard notice)")
    material = BooleanField("Material change: it changes what people agreed to")
    effective_on = DateField("Takes effect on (UTC; empty or today: at once)",
                             validators=[Optional()])
