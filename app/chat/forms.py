"""The dashboard's chat forms: sites, replies, visitor details, assignment, saved replies."""

import re
import secrets

from wtforms import (
    BooleanField,
    EmailField,
    FileField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    Email,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from app.chat.service import client_id_from
from app.chat.text import MAX_CHARS
from app.csrf import TokenForm as FlaskForm  # our CSRF token in every form

strip = [lambda v: v.strip() if isinstance(v, str) else v]
lower = [lambda v: v.strip().lower() if isinstance(v, str) else v]


def contrast_with_white(hex_colour: str) -> float:
    """WCAG contrast ratio of white text on this colour."""
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (luminance + 0.05)


def readable_accent(form, field):
    # The widget puts white text on the accent colour (header, Send, the visitor's bubbles).
    if re.fullmatch(r"#[0-9a-fA-F]{6}", field.data or "") and contrast_with_white(field.data) < 4.5:
        raise ValidationError("White text is hard to read on this colour; choose a darker one "
                              f"(contrast {contrast_with_white(field.data):.1f}:1, 4.5:1 needed).")


class SiteForm(FlaskForm):
    name = StringField("Site name", validators=[DataRequired("Give the site a name."), Length(max=120)], filters=strip)
    allowed_origins = TextAreaField(
        "Allowed origins (one a line, like https://shop.example.com)",
        validators=[DataRequired("Add at least one origin where the widget may appear."), Length(max=4000)])
    greeting = StringField("Greeting", validators=[DataRequired("Write a greeting."), Length(max=300)], filters=strip)
    away_message = StringField("Away message", validators=[DataRequired("Write an away message."), Length(max=300)], filters=strip)
    accent_color = StringField("Accent colour", validators=[
        Regexp(r"^#[0-9a-fA-F]{6}$", message="Use a colour like #4338ca."), readable_accent],
        filters=strip)
    retention_days = IntegerField("Keep chats for (days)", validators=[
        NumberRange(1, 3650, "Choose between 1 and 3,650 days.")])
    enabled = BooleanField("Widget switched on", default=True)


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
