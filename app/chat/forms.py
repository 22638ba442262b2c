"""The dashboard's chat forms: replies, visitor details, assignment, saved replies."""

import re
import secrets

from wtforms import (
    EmailField,
    FileField,
    HiddenField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    Email,
    Length,
    Optional,
    Regexp,
)

from app.chat.service import client_id_from
from app.chat.text import MAX_CHARS
from app.csrf import TokenForm as FlaskForm  # our CSRF token in every form

strip = [lambda v: v.strip() if isinstance(v, str) else v]
lower = [lambda v: v.strip().lower() if isinstance(v, str) else v]


def client_id_field():
    """The hidden id that makes a chat post safe to retry: fresh each time the form is rendered
    (so a browser's re-post of one rendered form is the same post), the posted one kept when
    the form is shown again after a refusal (nothing was stored under it)."""
    return HiddenField(default=lambda: secrets.token_urlsafe(16),
                       filters=[lambda v: client_id_from(v) or secrets.token_urlsafe(16)])


REPLY_TOO_LONG = f"At most {MAX_CHARS:,} characters."


class ReplyForm(FlaskForm):
    client_id = client_id_field()
    body = TextAreaField("Reply", validators=[Length(max=MAX_CHARS, message=REPLY_TOO_LONG)])
    file = FileField("Attach a file")


class VisitorForm(FlaskForm):
    name = StringField("Visitor name", validators=[Length(max=120)], filters=strip)
    email = EmailField("Visitor e-mail", validators=[
        Optional(), Email("Enter a valid e-mail address.", check_deliverability=False), Length(max=254)],
        filters=lower)


class AssignForm(FlaskForm):
    assignee = SelectField("Assigned to", choices=[], validate_choice=False)


class SavedReplyForm(FlaskForm):
    shortcut = StringField("Shortcut (typed as /shortcut)", validators=[
        DataRequired("Give it a shortcut."), Length(max=40),
        Regexp(r"^[a-z0-9_-]+$", flags=re.I, message="Use letters, digits, - and _ only.")], filters=lower)
    body = TextAreaField("Text", validators=[DataRequired("Write the reply."), Length(max=MAX_CHARS)])
