"""Staff forms: suspending a workspace."""

from wtforms import TextAreaField

from app.csrf import TokenForm as FlaskForm


class SuspendForm(FlaskForm):
    # Judged by the service (staff_service.suspend): one rule, whatever calls it.
    reason = TextAreaField("Reason (the customer reads it)")
