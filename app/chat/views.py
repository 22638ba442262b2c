"""Dashboard chat: inbox, search, a conversation and saved replies."""


from flask import (
    Blueprint,
    Response,
    abort,
    g,
    has_request_context,
    jsonify,
    redirect,
    request,
    url_for,
)
from markupsafe import Markup, escape

from app.accounts.models import User
from app.accounts.sessions import login_required, workspace_id
from app.chat import files, service
from app.chat.forms import SavedReplyForm, VisitorForm
from app.chat.models import Attachment, Conversation, Message
from app.chat.pages import conversation_context, inbox_context, list_args, list_url
from app.chat.service import ChatError
from app.chat.text import render_text
from app.csrf import hidden_input, token
from app.paging import page_arg, whole_number
from app.rendering import go, render, render_form_errors
from app.security import error_page

bp = Blueprint("chat", __name__, url_prefix="/dashboard")

def scoped_conversation(conversation_id: int) -> Conversation:
    """The conversation if it belongs to the current workspace; 404 otherwise, never 403,
    so ids of other workspaces reveal nothing."""
    conv = service.WORKSPACE_CONVERSATION.first(conversation_id, workspace_id())
    if conv is None:
        abort(404)
    return conv


# --- inbox and search -------------------------------------------------------------------------


@bp.get("/inbox")
@login_required
def inbox():
    ws = workspace_id()
    after = service.last_event_id(ws)  # before the list is read: see pages.conversation_context
    context = inbox_context(*list_args())
    unread = service.unread_total(ws)
    if not pane_request("inbox"):
        return render("chat/inbox.html", after=after, unread=unread, **context)
    response = render("chat/_inbox.html", after=after, unread=unread, **context)
    # The list changed beside an open conversation (htmx sends the open one's id, see
    # chat/_conversation.html): the address names that conversation with the new list, so
    # that a reload shows both panes as they are.
    open_id = whole_number(request.args.get("open", ""))
    conv = service.WORKSPACE_CONVERSATION.first(open_id, ws) if open_id else None
    state = context["filter"], context["page"], context["q"], context["label"]
    response.headers["HX-Push-Url"] = (
        list_url("chat.conversation_show", *state, conversation_id=conv.id) if conv
        else list_url("chat.inbox", *state))
    return response


def pane_request(pane: str) -> bool:
    """Whether htmx asks for one pane of the inbox page (its id is the request's target): a
    row or link in the list is boosted (a real link, so opening it in a new tab still works),
    and a boosted request otherwise gets the whole page (app.rendering.wants_fragment)."""
    htmx = request.htmx
    return bool(htmx) and htmx.target == pane and not htmx.history_restore_request


# --- one conversation ------------------------------------------------------------------------




@bp.get("/conversations/<int:conversation_id>")
@login_required
def conversation_show(conversation_id):
    conv = scoped_conversation(conversation_id)
    service.mark_read(conv)
    if pane_request("conversation-pane"):
        # Only the right-hand pane: the list beside it is already on the page. The address is
        # said by the answer: the link that asked may be gone by now (a live event replaces
        # its row), and htmx forgets that a link it no longer holds was boosted.
        response = render("chat/_conversation.html", pane_swap=True,
                          **conversation_context(conv, with_list=False))
        response.headers["HX-Push-Url"] = list_url("chat.conversation_show", *list_args(),
                                                   conversation_id=conv.id)
        return response
    return render("chat/conversation.html", **conversation_context(conv, with_list=True))


# An agent's reply is served by app/chat/wire.py at the ASGI root (one route, one set of
# rules); Flask keeps a build-only rule (never matched, no view) so that url_for builds it.
bp.add_url_rule("/conversations/<int:conversation_id>/messages", "conversation_reply",
                methods=["POST"], build_only=True)


@bp.post("/conversations/<int:conversation_id>/typing")
@login_required
def conversation_typing(conversation_id):
    service.typing(scoped_conversation(conversation_id), Message.AGENT)
    return Response(status=204)


@bp.post("/conversations/<int:conversation_id>/read")
@login_required
def conversation_read(conversation_id):
    """Asked by the page showing the conversation when a visitor's message arrives in it
    (static/js/inbox.js): "unchanged" says it was read already, so that no "read" event is
    coming for the page to wait for."""
    changed = service.mark_read(scoped_conversation(conversation_id))
    return Response(status=204, headers={"Lumnar-Read": "changed" if changed else "unchanged"})


@bp.post("/conversations/<int:conversation_id>/status")
@login_required
def conversation_status(conversation_id):
    conv = scoped_conversation(conversation_id)
    try:
        service.set_status(conv, request.form.get("status", ""))
    except ChatError as err:
        return error_page(err.status, "Check the form", err.message)
    return status_answer(conv)


@bp.post("/conversations/<int:conversation_id>/assign")
@login_required
def conversation_assign(conversation_id):
    conv = scoped_conversation(conversation_id)
    raw = request.form.get("assignee", "")
    if raw == "me":
        raw = str(g.user.id)
    try:
        # A number no row can have is nobody's id (0): refused like any non-member.
        service.assign(conv, (whole_number(raw) or 0) if raw.isdigit() else None)
    except ChatError as err:
        return error_page(err.status, "Check the form", err.message)
    return status_answer(conv)


def status_answer(conv):
    """After a change of status or assignee: with htmx, the conversation's status line as it
    now stands (the page stays as it is: no reload of both panes); a plain form post goes
    back to the conversation's page."""
    if request.htmx:
        return render("chat/_status.html", conversation=scoped_conversation(conv.id))
    return go(url_for("chat.conversation_show", conversation_id=conv.id))


@bp.post("/conversations/<int:conversation_id>/delete")
@login_required
def conversation_delete(conversation_id):
    service.delete_conversation(scoped_conversation(conversation_id), Message.AGENT)
    return go(url_for("chat.inbox"))


@bp.post("/conversations/<int:conversation_id>/visitor/delete")
@login_required
def visitor_delete(conversation_id):
    service.delete_visitor(scoped_conversation(conversation_id).visitor)
    return go(url_for("chat.inbox"))


@bp.post("/conversations/<int:conversation_id>/visitor")
@login_required
def visitor_update(conversation_id):
    conv = scoped_conversation(conversation_id)
    form = VisitorForm()
    if not form.validate_on_submit():
        return render_form_errors("chat/conversation.html", "chat/_visitor_form.html", form,
                                  **conversation_context(conv, visitor_form=form))
    service.update_visitor(conv.visitor, form.name.data or "", form.email.data or "")
    conv = scoped_conversation(conversation_id)
    return render("chat/conversation.html", "chat/_visitor_form.html", visitor_saved=True,
                  **conversation_context(conv))


@bp.get("/attachments/<int:attachment_id>")
@login_required
def attachment_download(attachment_id):
    attachment = Attachment.get_or_none((Attachment.id == attachment_id)
                                        & (Attachment.workspace_id == workspace_id()))
    if attachment is None:
        abort(404)
    return files.attachment_response(attachment, request.args.get("inline") == "1")


# --- saved replies ---------------------------------------------------------------------------


@bp.get("/saved-replies")
@login_required
def saved_replies():
    q = request.args.get("q", "").strip()[:100]
    page = page_arg()
    replies, more = service.saved_replies(workspace_id(), q, page)
    return render("chat/saved_replies.html", "chat/_saved_reply_list.html", replies=replies,
                  more=more, q=q, page=page, form=SavedReplyForm(formdata=None))


@bp.post("/saved-replies")
@login_required
def saved_reply_create():
    form = SavedReplyForm()
    error = None
    if form.validate_on_submit():
        try:
            reply = service.add_saved_reply(workspace_id(), form.shortcut.data, form.body.data)
        except ChatError as err:
            error = err
        else:
            if not request.htmx:
                return go(url_for("chat.saved_replies"))
            # A fresh form, and the new reply put at the top of the list on the page: nothing
            # else of the list is read or rendered again, however long it is.
            return render("chat/_saved_reply_form.html", form=SavedReplyForm(formdata=None),
                          added=reply)
    # A refusal beside its field; the whole page (first page of the list) without htmx.
    replies, more = ([], False) if request.htmx else service.saved_replies(workspace_id())
    return render_form_errors("chat/saved_replies.html", "chat/_saved_reply_form.html", form,
                              error=error, replies=replies, more=more, q="", page=1, form=form)


@bp.post("/saved-replies/<int:reply_id>/delete")
@login_required
def saved_reply_delete(reply_id):
    if not service.delete_saved_reply(workspace_id(), reply_id):
        abort(404)
    if request.htmx:
        return Response("", 200)  # its row is swapped for nothing
    return go(url_for("chat.saved_replies"))


@bp.get("/saved-replies/find")
@login_required
def saved_reply_find():
    """The reply form's picker: the few saved replies matching what the agent typed, asked
    for as they type (htmx). Without JavaScript, the saved replies page finds them."""
    q = request.args.get("q", "")[:100]
    if not request.htmx:
        return redirect(url_for("chat.saved_replies", q=q.strip() or None))
    return render("chat/_saved_reply_results.html", q=q.strip(),
                  replies=service.find_saved_replies(workspace_id(), q),
                  limit=service.SAVED_REPLY_MATCHES)


@bp.get("/saved-replies/shortcut")
@login_required
def saved_reply_shortcut():
    """The text that `/shortcut` typed in a reply stands for (static/js/dashboard.js)."""
    reply = service.saved_reply_by_shortcut(workspace_id(), request.args.get("name", ""))
    if reply is None:
        abort(404)
    return jsonify(shortcut=reply.shortcut, body=reply.body)


@bp.app_template_filter("assignee_name")
def assignee_name(user_id):
    if not user_id:
        return "Nobody"
    # An inbox page names the same few teammates on many rows: look each up once.
    names = g.setdefault("assignee_names", {})
    if user_id not in names:
        user = User.get_or_none(User.id == user_id)
        names[user_id] = user.name if user else "Nobody"
    return names[user_id]


# --- template helpers ----------------------------------------------------------------------------


@bp.app_template_filter("chat_text")
def chat_text(text):
    return render_text(text)


@bp.app_template_filter("highlight")
def highlight(snippet, markers):
    """Escape a search snippet, then turn FTS5's highlight markers into <mark>."""
    start, end = markers
    return Markup(str(escape(snippet)).replace(start, "<mark>").replace(end, "</mark>"))


@bp.app_template_global("csrf_field")
def csrf_field():
    """The hidden CSRF input when rendering for a request; nothing in a stream event, whose
    forms post through htmx with the page's X-CSRFToken header."""
    if not has_request_context() or g.get("streaming"):
        return ""
    return hidden_input(token())


@bp.app_template_global("live_after")
def live_after():
    return service.last_event_id(g.membership.workspace_id) if g.get("membership") else 0


@bp.app_template_global("unread_total")
def unread_total_global():
    return service.unread_total(g.membership.workspace_id) if g.get("membership") else 0
