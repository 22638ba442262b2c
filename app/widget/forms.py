"""The widget's forms: a site's settings (dashboard), a visitor's message and details (widget)."""

import re

from wtforms import BooleanField, EmailField, FileField, IntegerField, StringField, TextAreaField
from wtforms.validators import (
    DataRequired,
    Email,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from app.chat.forms import client_id_field, lower, strip
from app.chat.text import MAX_CHARS
from app.csrf import TokenForm as FlaskForm  # the same form base as every other form


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


# The widget's forms carry no CSRF token: the visitor's credential is a header that another
# site's page can neither read nor send, not a cookie the browser adds on its own.
class WidgetMessageForm(FlaskForm):
    class Meta:
        csrf = False

    client_id = client_id_field()
    body = TextAreaField("Message", validators=[Length(max=MAX_CHARS, message=f"Messages can be at most {MAX_CHARS:,} characters.")])
    file = FileField("Attach a file")
    name = StringField("Your name (optional)", validators=[Length(max=120)], filters=strip)
    email = EmailField("Your e-mail", validators=[
        Optional(), Email("Enter a valid e-mail address, like name@example.com.", check_deliverability=False),
        Length(max=254)], filters=lower)


class WidgetProfileForm(FlaskForm):
    class Meta:
        csrf = False

    name = StringField("Your name (optional)", validators=[Length(max=120)], filters=strip)
    email = EmailField("Your e-mail", validators=[
        DataRequired("Enter your e-mail address."),
        Email("Enter a valid e-mail address, like name@example.com.", check_deliverability=False),
        Length(max=254)], filters=lower)


class WidgetEmailForm(FlaskForm):
    """The e-mail the chat asks for while the team is away, to answer there."""

    class Meta:
        csrf = False

    email = EmailField("Your e-mail address", validators=[
        DataRequired("Enter your e-mail address, so that we can answer you."),
        Email("Enter a valid e-mail address, like name@example.com.", check_deliverability=False),
        Length(max=254)], filters=lower)
