"""Satisfaction ratings: once an agent resolves a conversation, the widget asks its visitor how
it went (good, okay or bad, with an optional comment), once per conversation.

The question shows in the widget while the conversation is resolved and not yet rated: live,
when the status event reaches the visitor's stream (app/chat/render.py renders this module's
fragment for it), and on reload (templates/widget/_chat.html). A rating is an event of its own
kind, so every agent watching sees it at once on the conversation's page. Reopening and
resolving again asks nothing more once rated: one row per conversation (a unique key).

The widget's post is protected as every widget post is: it needs the visitor's token header
(app/widget/views.py widget_view), which a cross-site form cannot send."""

from flask import Blueprint, Response, abort, request
from peewee import (
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    IntegrityError,
    TextField,
)

from app.chat import events, live
from app.chat.models import Conversation, Message
from app.chat.service import ChatError
from app.db import BaseModel, database, utcnow
from app.extensions import csrf, limiter
from app.rendering import render
from app.widget.views import visitor_key, widget_view

EVENT = "rating"  # the chat event's kind: a conversation was rated
COMMENT_MAX = 500
CHOICES = (("good", "Good"), ("okay", "Okay"), ("bad", "Bad"))
RATINGS = tuple(value for value, _ in CHOICES)

NOT_FOUND = "There is no such conversation in this chat."
STILL_OPEN = "This conversation is still open: it can be rated once it is resolved."
RATED = "This conversation was rated already; the first rating is kept."
CHOOSE = "Choose good, okay or bad."
TOO_LONG = f"Keep the comment to {COMMENT_MAX} characters."


class ConversationRating(BaseModel):
    conversation = ForeignKeyField(Conversation, unique=True, on_delete="CASCADE")
    workspace_id = IntegerField(index=True)
    rating = CharField(max_length=8)
    comment = TextField(default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "conversation_rating"


RATING_MODELS = [ConversationRating]


def rating_of(conversation_id: int) -> ConversationRating | None:
    return ConversationRating.get_or_none(ConversationRating.conversation == conversation_id)


def due(conversation: Conversation) -> bool:
    """Whether the widget asks this conversation's visitor for a rating now."""
    return conversation.status == Conversation.RESOLVED and rating_of(conversation.id) is None


def rate(conversation: Conversation, rating: str, comment: str) -> ConversationRating:
    if rating not in RATINGS:
        raise ChatError(CHOOSE, field="rating")
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX:
        raise ChatError(TOO_LONG, field="comment")
    if rating_of(conversation.id) is not None:
        raise ChatError(RATED, status=409)
    if conversation.status != Conversation.RESOLVED:
        raise ChatError(STILL_OPEN, status=409)
    try:
        with database.atomic():
            row = ConversationRating.create(conversation=conversation.id, rating=rating,
                                            comment=comment,
                                            workspace_id=conversation.workspace_id)
            event = events.new(conversation.workspace_id, conversation.id, EVENT,
                               ref_id=row.id, actor=Message.VISITOR)
    except IntegrityError:
        raise ChatError(RATED, status=409) from None  # a second post that crossed the first
    # A widget request committed above, outside the chat writer: published from this thread.
    live.publish([event])
    return row


# --- the widget's route ----------------------------------------------------------------------

bp = Blueprint("ratings", __name__)
csrf.exempt(bp)  # the visitor's token header instead (see the module's doc)


@bp.post("/widget/<site_key>/rating")
@limiter.limit("20 per hour", key_func=visitor_key)
@widget_view(visitor=True)
def rate_conversation(site, visitor):
    conversation_id = request.form.get("conversation", "")
    conversation = (Conversation.get_or_none(
        (Conversation.id == int(conversation_id)) & (Conversation.visitor == visitor.id)
        & (Conversation.site == site.id)) if conversation_id.isdigit() and len(conversation_id) < 18
        else None)
    if conversation is None:
        abort(Response(NOT_FOUND, status=404, mimetype="text/plain"))
    chosen, comment = request.form.get("rating", ""), request.form.get("comment", "")
    try:
        rate(conversation, chosen, comment)
    except ChatError as err:
        return render("widget/_rating.html", status=err.status, site=site,
                      conversation=conversation, rating_error=err.message,
                      chosen=chosen, comment=comment, ask=err.status == 422)
    return render("widget/_rating.html", site=site, conversation=conversation, thanks=True)


# --- what the templates call (pages and stream events alike) ---------------------------------


@bp.app_template_global("rating_due")
def rating_due(conversation) -> bool:
    return conversation is not None and due(conversation)


@bp.app_template_global("conversation_rating")
def conversation_rating(conversation_id: int) -> ConversationRating | None:
    return rating_of(conversation_id)


@bp.app_template_global("rating_choices")
def rating_choices() -> tuple:
    return CHOICES
