"""Chat events as SSE bytes: each event rendered once per audience, from the partials the pages use.

Agents get several out-of-band pieces per event (the message in an open conversation, the
inbox row moved to the top, the unread badge); visitors get their own, smaller set. The
dispatcher renders an event when it hands it out (live.Hub.dispatch), in the same worker
thread that read it, once for each audience that has a stream open: a hundred streams
watching one event cost one rendering and one encoding, and the streams only write bytes.

No Flask request is pushed: links are built from a URL adapter bound once to BASE_URL, and
the helpers the templates call that would need a request (url_for, csrf_field,
widget_file_url) are passed in explicitly. An app context is pushed once per batch of
events, for what only needs the app (the secret key of attachment links; `g`, which the
assignee_name filter uses as its per-render cache of names).
"""

from urllib.parse import urlsplit

from sse_starlette import ServerSentEvent

from app.chat import service
from app.chat.models import ChatEvent, Message
from app.db import thread_connection

AGENT, VISITOR = "agent", "visitor"


def encode(html: str | None, event_id: int | None = None, event: str = "update") -> bytes | None:
    """One SSE message, `id: N` / `event: update` / `data: ...` lines, as the bytes to send."""
    if html is None:
        return None
    return ServerSentEvent(data=html, event=event,
                           id=None if event_id is None else str(event_id)).encode()


class Renderer:
    """Renders chat events for streams, outside any request (see the module's doc)."""

    def __init__(self, flask_app):
        self.app = flask_app
        base = urlsplit(flask_app.config["BASE_URL"])
        self.urls = flask_app.url_map.bind(base.netloc, script_name=base.path or "/",
                                           url_scheme=base.scheme or "http")
        # Streamed forms carry no CSRF field: they post through htmx, which sends the page's
        # own X-CSRFToken header (the token is the session's, not the fragment's).
        self.helpers = {"url_for": self.url_for, "csrf_field": lambda: "",
                        "widget_file_url": self.widget_file_url}

    def url_for(self, endpoint: str, **values) -> str:
        return self.urls.build(endpoint, values)

    def widget_file_url(self, attachment_id: int, inline: bool = False) -> str:
        url = self.url_for("widget.attachment", token=service.attachment_link_token(attachment_id))
        return url + ("?inline=1" if inline else "")

    def html(self, template: str, **context) -> str:
        return self.app.jinja_env.get_template(template).render(**self.helpers, **context)

    def events(self, wanted) -> list[dict]:
        """`wanted`: [(event row, audiences)]. For each, {audience: SSE bytes, or None when the
        event shows that audience nothing}. Runs in a worker thread."""
        with self.app.app_context(), thread_connection():
            return [self.event(row, audiences) for row, audiences in wanted]

    def event(self, row, audiences) -> dict:
        if not audiences:
            return {}
        kind = row.kind
        conversation = message = None
        # Read once for both audiences; a visitor's typing or seen marker needs no rows.
        if kind != ChatEvent.DELETED and (AGENT in audiences or kind == ChatEvent.MESSAGE):
            # Published from memory (live.Written): the conversation as the write left it.
            conversation = (getattr(row, "conversation", None)
                            or service.CONVERSATION.first(row.conversation_id))
        if kind == ChatEvent.MESSAGE and conversation is not None:
            # Published from memory (live.Written): the write's own message object.
            message = getattr(row, "message", None) or service.MESSAGE.first(row.ref_id)
        out = {}
        for audience in audiences:
            make = self.agent_html if audience == AGENT else self.visitor_html
            out[audience] = encode(make(row, conversation, message), row.id)
        return out

    def agent_html(self, row, conversation, message) -> str | None:
        kind = row.kind
        if kind == ChatEvent.DELETED:
            return self.html("chat/_event_deleted.html", conversation_id=row.conversation_id,
                             by_visitor=row.actor == Message.VISITOR,
                             unread=service.unread_total(row.workspace_id))
        if conversation is None:
            return None  # deleted since: nothing of it may be shown
        if kind == ChatEvent.TYPING:
            if row.actor != Message.VISITOR:
                return None
            return self.html("chat/_typing.html", conversation=conversation, oob=True, active=True)
        if kind == ChatEvent.MESSAGE and message is None:
            return None
        return self.html("chat/_event_agent.html", conversation=conversation, message=message,
                         kind=kind, unread=service.unread_total(row.workspace_id))

    def visitor_html(self, row, conversation, message) -> str | None:
        kind = row.kind
        if kind == ChatEvent.DELETED:
            return self.html("widget/_deleted.html", oob=True,
                             by_visitor=row.actor == Message.VISITOR)
        if kind == ChatEvent.TYPING:
            if row.actor != Message.AGENT:
                return None
            return self.html("widget/_typing.html", oob=True, active=True)
        if kind == ChatEvent.MESSAGE:
            if message is None:
                return None
            return self.html("widget/_event_message.html", message=message)
        if kind == ChatEvent.READ:
            return self.html("widget/_seen.html", oob=True, seen=True)
        return None  # status and visitor-detail changes are for agents only
