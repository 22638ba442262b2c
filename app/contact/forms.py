"""The contact channel's forms: the public contact form, an owner's privacy request, and the
staff's reply, status and extension forms. The service checks the same rules again."""

from wtforms import SelectChoice, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from app.accounts.forms import PublicForm, email_field, name_field
from app.contact.models import ContactRequest
from app.contact.service import MESSAGE_MAX, REASON_MAX, REPLY_MAX
from app.csrf import TokenForm as FlaskForm


def strip(value):
    return value.strip() if isinstance(value, str) else value


def choices(labels: dict, prompt: str | None = None) -> list[SelectChoice]:
    first = [SelectChoice("", prompt)] if prompt else []
    return first + [SelectChoice(key, label) for key, label in labels.items()]


def text_field(label: str, limit: int, empty: str):
    return TextAreaField(label, filters=[strip], validators=[
        DataRequired(empty), Length(max=limit, message=f"Use at most {limit} characters.")])


class ContactForm(PublicForm):
    name = name_field()
    email = email_field("Your e-mail")
    topic = SelectField("What is it about?", choices=choices(ContactRequest.TOPICS, "Choose…"),
                        validators=[DataRequired("Choose what your message is about.")],
                        validate_choice=False)
    message = text_field("Your message", MESSAGE_MAX, "Write your message.")

    def validate_topic(self, field):
        if field.data and field.data not in ContactRequest.TOPICS:
            raise ValidationError("Choose what your message is about.")


class PrivacyRequestForm(FlaskForm):
    kind = SelectField("What are you asking for?",
                       choices=choices(ContactRequest.KINDS, "Choose…"),
                       validators=[DataRequired("Choose what you are asking for.")],
                       validate_choice=False)
    details = text_field("Details", MESSAGE_MAX, "Say what you are asking for.")

    def validate_kind(self, field):
        if field.data and field.data not in ContactRequest.KINDS:
            raise ValidationError("Choose what you are asking for.")


class ReplyForm(FlaskForm):
    body = text_field("Reply to the requester", REPLY_MAX, "Write the reply.")


class StatusForm(FlaskForm):
    status = SelectField("Status", choices=choices(ContactRequest.STATUSES),
                         validate_choice=False)


class ExtendForm(FlaskForm):
    reason = text_field("Why more time is needed (sent to the requester)", REASON_MAX,
                        "Say why more time is needed: the requester is told.")
