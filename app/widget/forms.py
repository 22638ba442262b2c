"""The widget's forms: a visitor's message and a visitor's details."""

from wtforms import EmailField, FileField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

from app.chat.forms import client_id_field, lower, strip
from app.chat.text import MAX_CHARS
from app.csrf import TokenForm as FlaskForm  # the same form base as every other form


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
