"""The widget's forms: a site's settings (dashboard), a visitor's message and details (widget)."""

from wtforms import (
    BooleanField,
    ColorField,
    EmailField,
    FileField,
    IntegerField,
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

from app.chat.forms import client_id_field, lower, strip
from app.chat.text import MAX_CHARS
from app.csrf import TokenForm as FlaskForm  # the same form base as every other form
from app.widget.colours import HEX, contrast_with_white, readable_on_white, shown
from app.widget.models import DEFAULT_LAUNCHER_LABEL


def readable_accent(form, field):
    # The widget puts white text on the accent colour (the launcher, header, Send, the
    # visitor's bubbles).
    if HEX.fullmatch(field.data or "") and not readable_on_white(field.data):
        raise ValidationError("White text is hard to read on this colour; choose a darker one "
                              f"(contrast {shown(contrast_with_white(field.data))}:1, 4.5:1 needed).")


# A multi-line text as the visitor will read it: line ends as one kind, no blank edges.
lines = [lambda v: v.replace("\r\n", "\n").replace("\r", "\n").strip() if isinstance(v, str) else v]
# An empty label (or none sent, as by a form from before the field) is the default one.
label_or_default = [lambda v: (v.strip() if isinstance(v, str) else "") or DEFAULT_LAUNCHER_LABEL]


class SiteForm(FlaskForm):
    name = StringField("Site name", validators=[DataRequired("Give the site a name."), Length(max=120)], filters=strip)
    allowed_origins = TextAreaField(
        "Allowed origins (one a line, like https://shop.example.com)",
        validators=[DataRequired("Add at least one origin where the widget may appear."), Length(max=4000)])
    greeting = StringField("Greeting", validators=[DataRequired("Write a greeting."), Length(max=300)], filters=strip)
    away_message = TextAreaField("Away message", validators=[
        DataRequired("Write an away message."),
        Length(max=300, message="Keep the away message to 300 characters or fewer.")], filters=lines,
        render_kw={"rows": 3})
    accent_color = ColorField("Accent colour", validators=[
        Regexp(r"^#[0-9a-fA-F]{6}$", message="Use a colour like #4338ca."), readable_accent],
        filters=strip)
    launcher_label = StringField("Chat button label", default=DEFAULT_LAUNCHER_LABEL, validators=[
        Length(max=40, message="Keep the button's label to 40 characters or fewer.")],
        filters=label_or_default)
    retention_days = IntegerField("Keep chats for (days)", validators=[
        NumberRange(1, 3650, "Choose between 1 and 3,650 days.")])
    enabled = BooleanField("Widget switched on", default=True)
    consent_required = BooleanField("Load only after consent (the widget waits for Lumnar.start())")


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
