"""What the dashboard's inbox and conversation pages are given: their template contexts, built
the same for the Flask views and for the chat's own reply route (app/chat/wire.py).

The inbox is one page in two panes: the conversation list on the left, the open conversation
on the right (templates/chat/inbox.html). A whole page carries both; an htmx request for one
pane gets that pane's fragment only, from the same template file."""

from flask import abort, g, request, url_for

from app.chat import labels, service
from app.chat.forms import AssignForm, ReplyForm, VisitorForm
from app.chat.models import Conversation, Message
from app.paging import page_arg, whole_number
from app.rendering import wants_fragment
from app.widget.models import Site


def list_args() -> tuple[str, int, str, int]:
    """The list pane's state from the query string: filter, page, search words and label. The
    same arguments on /dashboard/inbox and /dashboard/conversations/<id>, so that a
    conversation's address also says which list is beside it. A label that is not this
    workspace's: 404."""
    filter_ = request.args.get("filter", "open")
    if filter_ not in service.FILTERS:
        filter_ = "open"
    label = request.args.get("label", "")
    label_id = 0
    if label:
        found = labels.scoped(g.membership.workspace_id, whole_number(label))
        if found is None:
            abort(404)
        label_id = found.id
    return filter_, page_arg(), request.args.get("q", "").strip()[:200], label_id


def list_url(endpoint: str, filter_: str, page: int, q: str, label: int = 0, **values) -> str:
    """An address of the inbox page that keeps the list pane as it is (only what differs from
    the first page of open conversations is said)."""
    if q:
        values["q"] = q
    else:
        if filter_ != "open":
            values["filter"] = filter_
        if label:
            values["label"] = label
        if page > 1:
            values["page"] = page
    return url_for(endpoint, **values)


def inbox_context(filter_: str, page: int, q: str, label: int = 0) -> dict:
    ws = g.membership.workspace_id
    if q:
        # The results page shows no conversation list: do not read one.
        results, conversations, more = service.search(ws, q), [], False
    else:
        results = None
        conversations, more = service.inbox(ws, g.user, filter_, page, label)
        # The rows carry their assignee's name: the assignee_name filter needs no query.
        names = g.setdefault("assignee_names", {})
        names.update((c.assignee_id, c.assignee_name) for c in conversations if c.assignee_id)
    context = dict(conversations=conversations, more=more, filter=filter_, page=page, q=q,
                   label=label, results=results, hl=(service.HL_START, service.HL_END),
                   first_steps=None)
    if results is None and not conversations:
        context["first_steps"] = first_steps(ws)
    return context


def first_steps(workspace_id: int) -> dict:
    """What an empty list says to do next: add a site (none yet), put its snippet on the
    website (a site, but never a conversation), or nothing special (conversations exist, just
    not in this list). Asked only when the list is empty."""
    site = (Site.select(Site.id, Site.name).where(Site.workspace == workspace_id)
            .order_by(Site.id).first())
    talked = site is not None and Conversation.select(Conversation.id).where(
        Conversation.workspace == workspace_id).exists()
    return {"site": site, "talked": talked}


def conversation_context(conv, with_list: bool | None = None, **extra):
    """The conversation pane's context; with the list pane's too for a whole page (by default
    when the request does not ask for a fragment)."""
    # Before anything is read: the page's stream (and a pane's replay of buffered events,
    # static/js/live.js) starts after this number, so an event committed while the page is
    # being read is shown again rather than missed (showing one again changes nothing).
    after = service.last_event_id(conv.workspace_id)
    members = list(g.membership.workspace.members())
    assign_form = AssignForm(formdata=None, assignee=str(conv.assignee_id or ""))
    assign_form.assignee.choices = [("", "Nobody")] + [(str(m.user_id), m.user.name) for m in members]
    context = dict(
        conversation=conv,
        messages=list(Message.select().where(Message.conversation == conv).order_by(Message.id)),
        reply_form=ReplyForm(formdata=None),
        visitor_form=VisitorForm(formdata=None, name=conv.visitor.name, email=conv.visitor.email),
        assign_form=assign_form,
        after=after,
        back_url=list_url("chat.inbox", *list_args()),  # on a phone: back to the list it came from
    )
    if with_list is None:
        with_list = not wants_fragment()
    if with_list:
        context.update(inbox_context(*list_args()))
    context["unread"] = service.unread_total(conv.workspace_id)
    context.update(extra)
    return context
