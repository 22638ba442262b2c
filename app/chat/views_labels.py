"""The Labels page (owners keep the workspace's labels and its round-robin assignment), and
labels put on and taken off a conversation by any member."""

from flask import Blueprint, abort, g, request, url_for
from wtforms import BooleanField, ColorField, IntegerField, StringField
from wtforms.validators import InputRequired

from app.accounts.models import Membership
from app.accounts.sessions import login_required, owner_required, workspace_id
from app.chat import labels, service
from app.chat.labels import LabelError
from app.csrf import TokenForm as FlaskForm
from app.paging import whole_number
from app.rendering import go, render, render_form_errors
from app.security import error_page

bp = Blueprint("labels", __name__, url_prefix="/dashboard")

strip = [lambda v: v.strip() if isinstance(v, str) else v]


# The rules for names, colours and limits are the service's (app/chat/labels.py): its refusals
# are shown beside these fields.
class LabelForm(FlaskForm):
    name = StringField("Name", filters=strip, render_kw={"maxlength": labels.NAME_MAX})
    colour = ColorField("Colour", default="#4338ca", filters=strip)


class RoundRobinForm(FlaskForm):
    enabled = BooleanField("Assign each new conversation in turn to a member who has the "
                           "dashboard open")


class LimitForm(FlaskForm):
    max_open = IntegerField("Most open conversations", validators=[
        InputRequired(labels.LIMIT_HINT)], render_kw={"min": 0, "max": labels.LIMIT_MAX})

# --- the Labels page ---------------------------------------------------------------------------


def page_context(**extra) -> dict:
    """Everything the page shows; `extra` puts a form with its errors in place of a fresh one
    (`new_form`, `edit_forms`, `rule_form`, `limit_forms`)."""
    ws = workspace_id()
    found = labels.workspace_labels(ws)
    edit_forms = {label.id: LabelForm(formdata=None, prefix=f"label-{label.id}", obj=label)
                  for label in found}
    edit_forms.update(extra.pop("edit_forms", {}))
    for label in found:  # each row's fields say which label they belong to
        edit_forms[label.id].name.label.text = f"Name of {label.name}"
        edit_forms[label.id].colour.label.text = f"Colour of {label.name}"
    members = labels.member_limits(ws)
    limit_forms = {membership.id: LimitForm(formdata=None, prefix=f"member-{membership.id}",
                                            max_open=max_open)
                   for membership, max_open in members}
    limit_forms.update(extra.pop("limit_forms", {}))
    for membership, _ in members:
        limit_forms[membership.id].max_open.label.text = (
            f"Most open conversations for {membership.user.name}")
    context = dict(labels=found, edit_forms=edit_forms, new_form=LabelForm(formdata=None),
                   rule_form=RoundRobinForm(formdata=None, prefix="round-robin",
                                            enabled=labels.rule(ws).enabled),
                   members=members, limit_forms=limit_forms, labels_max=labels.LABELS_MAX,
                   is_owner=g.membership.is_owner)
    context.update(extra)
    return context


def answer(status_note: str = "", **extra):
    """The page, or its one fragment for htmx, after a change or a refusal."""
    return render("chat/labels.html", "chat/_labels_page.html", note=status_note,
                  **page_context(**extra))


@bp.get("/labels")
@login_required
def labels_page():
    return answer()


@bp.post("/labels")
@owner_required
def label_create():
    form = LabelForm()
    try:
        label = labels.create(workspace_id(), form.name.data, form.colour.data)
    except LabelError as err:
        return refused(form, err, new_form=form)
    return done(f"Label “{label.name}” created.")


@bp.post("/labels/<int:label_id>")
@owner_required
def label_update(label_id):
    label = scoped_label(label_id)
    form = LabelForm(prefix=f"label-{label.id}")
    try:
        labels.update(label, form.name.data, form.colour.data)
    except LabelError as err:
        return refused(form, err, edit_forms={label.id: form})
    return done(f"Label “{label.name}” saved.")


@bp.post("/labels/<int:label_id>/delete")
@owner_required
def label_delete(label_id):
    label = scoped_label(label_id)
    labels.delete(label)
    return done(f"Label “{label.name}” deleted, and taken off every conversation.")


@bp.post("/assignment")
@owner_required
def round_robin_switch():
    form = RoundRobinForm(prefix="round-robin")
    labels.switch_round_robin(workspace_id(), form.enabled.data)
    return done("Round-robin assignment is " + ("on." if form.enabled.data else "off."))


@bp.post("/assignment/members/<int:membership_id>")
@owner_required
def member_limit(membership_id):
    membership = Membership.get_or_none((Membership.id == membership_id)
                                        & (Membership.workspace == workspace_id()))
    if membership is None:
        abort(404)
    form = LimitForm(prefix=f"member-{membership.id}")
    err = None
    if form.validate_on_submit():
        try:
            labels.set_limit(membership, form.max_open.data)
        except LabelError as refusal:
            err = refusal
        else:
            return done(f"Limit saved for {membership.user.name}.")
    return refused(form, err, limit_forms={membership.id: form})


def scoped_label(label_id: int) -> labels.Label:
    """The label if it is this workspace's; 404 otherwise (ids of others reveal nothing)."""
    label = labels.scoped(workspace_id(), label_id)
    if label is None:
        abort(404)
    return label


def done(note: str):
    if not request.htmx:
        return go(url_for("labels.labels_page"))
    return answer(note)


def refused(form, err, **extra):
    return render_form_errors("chat/labels.html", "chat/_labels_page.html", form, error=err,
                              note="", **page_context(**extra))


# --- labels on a conversation --------------------------------------------------------------------


def scoped_conversation(conversation_id: int):
    conversation = service.WORKSPACE_CONVERSATION.first(conversation_id, workspace_id())
    if conversation is None:
        abort(404)
    return conversation


@bp.post("/conversations/<int:conversation_id>/labels")
@login_required
def conversation_label_add(conversation_id):
    conversation = scoped_conversation(conversation_id)
    raw = request.form.get("label", "")
    if not raw:
        return error_page(422, "Check the form", "Choose a label to add.")
    label = scoped_label(whole_number(raw) or 0)
    labels.put_on(conversation, label)
    return conversation_labels_answer(conversation)


@bp.post("/conversations/<int:conversation_id>/labels/<int:label_id>/delete")
@login_required
def conversation_label_remove(conversation_id, label_id):
    conversation = scoped_conversation(conversation_id)
    labels.take_off(conversation, scoped_label(label_id))
    return conversation_labels_answer(conversation)


def conversation_labels_answer(conversation):
    """htmx: the conversation's labels as they now stand; a plain form post goes back to the
    conversation's page."""
    if request.htmx:
        return render("chat/_labels_conversation.html", conversation=conversation)
    return go(url_for("chat.conversation_show", conversation_id=conversation.id))


# --- what the chat's templates call (pages and stream events alike) --------------------------


@bp.app_template_global("label_chips")
def label_chips(conversation_ids) -> dict:
    return labels.chips_for(conversation_ids)


@bp.app_template_global("workspace_labels")
def workspace_labels(ws_id: int) -> list:
    return labels.workspace_labels(ws_id)
