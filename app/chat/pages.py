"""What the dashboard's conversation page is given: its template context, built the same for
the Flask views and for the chat's own reply route (app/chat/wire.py)."""

from flask import g

from app.chat import service
from app.chat.forms import AssignForm, ReplyForm, VisitorForm
from app.chat.models import Message


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
        after=service.last_event_id(conv.workspace_id),
        unread=service.unread_total(conv.workspace_id),
    )
    context.update(extra)
    return context
