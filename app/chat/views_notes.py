"""The reply form's two modes, a reply to the visitor or a private note for the team
(app/chat/notes.py). Notes themselves are posted with the form to the chat's reply route
(app/chat/wire.py), which tells them by the form's `kind`."""

from flask import Blueprint, abort, request

from app.accounts.sessions import login_required, workspace_id
from app.chat import notes, service
from app.chat.forms import ReplyForm
from app.chat.pages import conversation_context
from app.chat.text import MAX_CHARS
from app.rendering import render, wants_fragment

bp = Blueprint("notes", __name__, url_prefix="/dashboard")
# A note's fragment names the members it mentions (templates/chat/_message.html).
bp.add_app_template_global(notes.mention_ids, "note_mentions")


@bp.get("/conversations/<int:conversation_id>/reply-form")
@login_required
def reply_mode(conversation_id):
    """The reply form in the mode asked for (`mode=note`: a private note), keeping what was
    typed; without htmx, the conversation's page with the form so."""
    conv = service.WORKSPACE_CONVERSATION.first(conversation_id, workspace_id())
    if conv is None:
        abort(404)
    mode = dict(reply_form=ReplyForm(formdata=None, body=request.args.get("body", "")[:MAX_CHARS]),
                note_mode=request.args.get("mode") == "note", mode_switched=True)
    if wants_fragment():
        return render("chat/_reply_form.html", conversation=conv, **mode)
    return render("chat/conversation.html", **conversation_context(conv, **mode))
