"""Chat events as HTML: what each stream sends is rendered from the same partials the pages use.

Agents get several out-of-band pieces per event (the message in an open conversation, the
inbox row moved to the top, the unread badge); visitors get their own, smaller set.
Both run in a worker thread with the Flask app context and a database connection.
"""

from flask import render_template

from app.chat import service
from app.chat.models import ChatEvent, Message


def _conversation(conversation_id):
    return service.CONVERSATION.first(conversation_id)


def _message(message_id):
    return service.MESSAGE.first(message_id)


def agent_html(row) -> str | None:
    kind = row.kind
    if kind == ChatEvent.DELETED:
        return render_template("chat/_event_deleted.html", conversation_id=row.conversation_id,
                               by_visitor=row.actor == Message.VISITOR,
                               unread=service.unread_total(row.workspace_id))
    conv = _conversation(row.conversation_id)
    if conv is None:
        return None  # deleted since: nothing of it may be shown
    if kind == ChatEvent.TYPING:
        if row.actor != Message.VISITOR:
            return None
        return render_template("chat/_typing.html", conversation=conv, oob=True, active=True)
    message = _message(row.ref_id) if kind == ChatEvent.MESSAGE else None
    if kind == ChatEvent.MESSAGE and message is None:
        return None
    return render_template("chat/_event_agent.html", conversation=conv, message=message,
                           kind=kind, unread=service.unread_total(row.workspace_id))


def visitor_html(row) -> str | None:
    kind = row.kind
    if kind == ChatEvent.DELETED:
        return render_template("widget/_deleted.html", oob=True, by_visitor=row.actor == Message.VISITOR)
    if kind == ChatEvent.TYPING:
        if row.actor != Message.AGENT:
            return None
        return render_template("widget/_typing.html", oob=True, active=True)
    if kind == ChatEvent.MESSAGE:
        message = _message(row.ref_id)
        if message is None:
            return None
        return render_template("widget/_event_message.html", message=message)
    if kind == ChatEvent.READ:
        return render_template("widget/_seen.html", oob=True, seen=True)
    return None  # status and visitor-detail changes are for agents only
