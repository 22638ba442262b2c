"""Dashboard chat: inbox, search, a conversation, sites and saved replies."""


from flask import Blueprint, Response, abort, g, request, url_for

from app.accounts.models import User
from app.accounts.sessions import login_required, owner_required, scoped_or_404, workspace_id
from app.chat import files, service
from app.chat.forms import AssignForm, ReplyForm, SavedReplyForm, SiteForm, VisitorForm
from app.chat.models import Attachment, ChatEvent, Conversation, Message
from app.chat.service import ChatError
from app.db import Prepared
from app.paging import page_arg, whole_number
from app.rendering import go, render, render_form_errors
from app.security import error_page
from app.widget.models import Site

bp = Blueprint("chat", __name__, url_prefix="/dashboard")

def scoped_conversation(conversation_id: int) -> Conversation:
    """The conversation if it belongs to the current workspace; 404 otherwise, never 403,
    so ids of other workspaces reveal nothing."""
    conv = service.WORKSPACE_CONVERSATION.first(conversation_id, workspace_id())
    if conv is None:
        abort(404)
    return conv


LAST_EVENT = Prepared(lambda ws_id: ChatEvent.select(ChatEvent.id).where(
    ChatEvent.workspace_id == ws_id).order_by(ChatEvent.id.desc()).limit(1))


def last_event_id(ws_id: int) -> int:
    return LAST_EVENT.scalar(ws_id) or 0


# --- inbox and search -------------------------------------------------------------------------


@bp.get("/inbox")
@login_required
def inbox():
    ws = workspace_id()
    filter_ = request.args.get("filter", "open")
    if filter_ not in service.FILTERS:
        filter_ = "open"
    page = page_arg()
    q = request.args.get("q", "").strip()[:200]
    if q:
        # The results page shows no conversation list: do not read one.
        results, conversations, more = service.search(ws, q), [], False
    else:
        results = None
        conversations, more = service.inbox(ws, g.user, filter_, page)
        # The rows carry their assignee's name: the assignee_name filter needs no query.
        names = g.setdefault("assignee_names", {})
        names.update((c.assignee_id, c.assignee_name) for c in conversations if c.assignee_id)
    return render("chat/inbox.html", "chat/_inbox.html", conversations=conversations, more=more,
                  filter=filter_, page=page, q=q, results=results, after=last_event_id(ws),
                  unread=service.unread_total(ws), hl=(service.HL_START, service.HL_END))


# --- one conversation ------------------------------------------------------------------------


def conversation_context(conv, **extra):
    members = list(g.membership.workspace.members())
    assign_form = AssignForm(formdata=None, assignee=str(conv.assignee_id or ""))
    assign_form.assignee.choices = [("", "Nobody")] + [(str(m.user_id), m.user.name) for m in members]
    context = dict(
        conversation=conv,
        messages=list(Message.select().where(Message.conversation == conv).order_by(Message.id)),
        reply_form=ReplyForm(formdata=None),
        visitor_form=VisitorForm(formdata=None, name=conv.visitor.name, email=conv.visitor.email),
        assign_form=assign_form,
        saved=list(service.saved_replies(conv.workspace_id)),
        after=last_event_id(conv.workspace_id),
        unread=service.unread_total(conv.workspace_id),
    )
    context.update(extra)
    return context


@bp.get("/conversations/<int:conversation_id>")
@login_required
def conversation_show(conversation_id):
    conv = scoped_conversation(conversation_id)
    service.mark_read(conv)
    return render("chat/conversation.html", **conversation_context(conv))


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
    service.mark_read(scoped_conversation(conversation_id))
    return Response(status=204)


@bp.post("/conversations/<int:conversation_id>/status")
@login_required
def conversation_status(conversation_id):
    conv = scoped_conversation(conversation_id)
    try:
        service.set_status(conv, request.form.get("status", ""))
    except ChatError as err:
        return error_page(err.status, "Check the form", err.message)
    return go(url_for("chat.conversation_show", conversation_id=conv.id))


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
    return go(url_for("chat.conversation_show", conversation_id=conv.id))


@bp.post("/conversations/<int:conversation_id>/delete")
@login_required
def conversation_delete(conversation_id):
    service.delete_conversation(scoped_conversation(conversation_id), Message.AGENT)
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


# --- sites ---------------------------------------------------------------------------------------


def sites_context(**extra):
    # A new site starts from the model defaults (greeting, away message, colour, retention).
    context = dict(sites=list(Site.for_workspace(workspace_id())), form=SiteForm(formdata=None, obj=Site()))
    context.update(extra)
    return context


@bp.get("/sites")
@login_required
def sites():
    return render("chat/sites.html", **sites_context())


def _save_site(site, form, page, fragment, /, **context):
    if not form.validate_on_submit():
        return render_form_errors(page, fragment, form, form=form, **context)
    try:
        service.save_site(site, name=form.name.data, allowed_origins=form.allowed_origins.data,
                          greeting=form.greeting.data, away_message=form.away_message.data,
                          accent_color=form.accent_color.data.lower(),
                          retention_days=form.retention_days.data, enabled=form.enabled.data)
    except ChatError as err:
        return render_form_errors(page, fragment, form, error=err, form=form, **context)
    return go(url_for("chat.site_show", site_id=site.id))


@bp.post("/sites")
@owner_required
def site_create():
    site = Site(workspace=workspace_id())
    return _save_site(site, SiteForm(), "chat/sites.html", "chat/_site_form.html",
                      sites=list(Site.for_workspace(workspace_id())), action=url_for("chat.site_create"))


@bp.get("/sites/<int:site_id>")
@login_required
def site_show(site_id):
    site = scoped_or_404(Site, site_id)
    form = SiteForm(formdata=None, obj=site)
    return render("chat/site.html", site=site, form=form,
                  action=url_for("chat.site_update", site_id=site.id))


@bp.post("/sites/<int:site_id>")
@owner_required
def site_update(site_id):
    site = scoped_or_404(Site, site_id)
    return _save_site(site, SiteForm(), "chat/site.html", "chat/_site_form.html", site=site,
                      action=url_for("chat.site_update", site_id=site.id))


# --- saved replies ---------------------------------------------------------------------------


@bp.get("/saved-replies")
@login_required
def saved_replies():
    return render("chat/saved_replies.html", replies=list(service.saved_replies(workspace_id())),
                  form=SavedReplyForm(formdata=None))


@bp.post("/saved-replies")
@login_required
def saved_reply_create():
    form = SavedReplyForm()
    replies = list(service.saved_replies(workspace_id()))
    page, fragment = "chat/saved_replies.html", "chat/_saved_reply_form.html"
    if not form.validate_on_submit():
        return render_form_errors(page, fragment, form, replies=replies, form=form)
    if any(r.shortcut == form.shortcut.data for r in replies):
        taken = ChatError("A saved reply with this shortcut exists already.", field="shortcut")
        return render_form_errors(page, fragment, form, error=taken, replies=replies, form=form)
    service.add_saved_reply(workspace_id(), form.shortcut.data, form.body.data)
    return go(url_for("chat.saved_replies"))


@bp.post("/saved-replies/<int:reply_id>/delete")
@login_required
def saved_reply_delete(reply_id):
    if not service.delete_saved_reply(workspace_id(), reply_id):
        abort(404)
    return go(url_for("chat.saved_replies"))


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
    from app.chat.text import render_text

    return render_text(text)


@bp.app_template_filter("highlight")
def highlight(snippet, markers):
    """Escape a search snippet, then turn FTS5's highlight markers into <mark>."""
    from markupsafe import Markup, escape

    start, end = markers
    return Markup(str(escape(snippet)).replace(start, "<mark>").replace(end, "</mark>"))


@bp.app_template_global("csrf_field")
def csrf_field():
    """The hidden CSRF input when rendering for a request; nothing in a stream event, whose
    forms post through htmx with the page's X-CSRFToken header."""
    from flask import has_request_context

    from app.csrf import hidden_input, token

    if not has_request_context() or g.get("streaming"):
        return ""
    return hidden_input(token())


@bp.app_template_global("live_after")
def live_after():
    return last_event_id(g.membership.workspace_id) if g.get("membership") else 0


@bp.app_template_global("unread_total")
def unread_total_global():
    return service.unread_total(g.membership.workspace_id) if g.get("membership") else 0
