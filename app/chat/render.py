"""Chat events as SSE bytes: each event rendered once per audience, from the partials the pages use.

Agents get several out-of-band pieces per event (the message in an open conversation, the
inbox row moved to the top, the unread badge); visitors get their own, smaller set. Each event
is rendered once for each audience that has a stream open, before it is handed to the
streams: a hundred streams watching one event cost one rendering and one encoding, and the
streams only write bytes. Where that happens:

- this process's chat writes: on the event loop, inside the chat writer's batch right after
  its commit, from the objects the writes made (app/chat/writer.py calls live.Hub.prepare);
- a chat write committed outside the writer: in the thread that committed it (live.publish);
- events read back from the database (another process's, or one whose rendering from memory
  failed): in the dispatcher's worker thread, the one that read them (live.Hub.dispatch);
- a reconnecting stream's replay of events no longer kept rendered: in its opening's worker
  thread (live.Hub.replay_rendered).

No Flask request is pushed: links are built from a URL adapter bound once to BASE_URL, and
the helpers the templates call that would need a request (url_for, csrf_field,
widget_file_url) are passed in explicitly. What only needs the app (the secret key of
attachment links; `g`, which the assignee_name filter uses as its cache of names) comes from
the writer batch's app context when rendering there, else from one pushed per call of
Renderer.events.
"""

import contextlib
import re
import secrets
import threading
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from jinja2 import BaseLoader, Environment

from app.chat import labels, service
from app.chat.live import AGENT, audience_language
from app.chat.models import ChatEvent, Conversation, Message
from app.csrf import hidden_input
from app.db import thread_connection
from app.widget import service as widget_service
from app.widget.language import speaking

ID_MARK = "client-id-goes-here"  # where a fresh form's client id is put in (see compose)
LINKS_KEPT = 4096  # built links kept; past that, the lot is dropped and built again
CONVERSATION_MARK = "conversation-id-goes-here"  # where a deletion notice's id is put in
FORMS_KEPT = 1024  # fresh forms kept, one per site and kind, one per conversation and agent


LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode(html: str | None, event_id: int | None = None, event: str = "update") -> bytes | None:
    """One SSE message, `id: N` / `event: update` / `data: ...` lines, as the bytes to send:
    the same bytes as sse-starlette's ServerSentEvent(...).encode() (a test holds them
    equal), made with one substitution instead of a write per line, which cost a tenth of
    rendering an event (profiled)."""
    if html is None:
        return None
    head = f"event: {event}\r\n" if event_id is None else f"id: {event_id}\r\nevent: {event}\r\n"
    return (head + "data: " + LINE_BREAK.sub("\r\ndata: ", html) + "\r\n\r\n").encode()


class Value:
    """A field of a fresh form: its value, and no errors (a refusal is rendered by Flask)."""

    __slots__ = ("data",)
    errors = ()

    def __init__(self, data):
        self.data = data


class Filled:
    """What a form's template reads of a WTForms form (`form.<field>.data`, `form.form_errors`),
    for the chat writes' answers: building a WTForms form per message cost more than the
    template it fills (profiled), and these forms' rules are the chat service's."""

    def __init__(self, errors=(), **data):
        self.form_errors = list(errors)
        for name, value in data.items():
            setattr(self, name, Value(value))


class Inlined(BaseLoader):
    """The app's template files, each `{% include "name" %}` replaced by that file's text.

    Why: the chat's fragments are small files included into one another (an agent's event is
    the message, the inbox row, the typing line and the unread badge), and Jinja gives every
    include a context of its own; for fragments this small that was half of rendering them
    (measured: an agent's event 278 -> 158 µs). Inlining keeps one set of files for the
    pages and the streams; an included file sees the same variables either way (Jinja passes
    the including context and its `with` variables to an include). Includes with a variable
    name or options are left as includes."""

    INCLUDE = re.compile(r'{%-?\s*include\s+"([^"]+)"\s*-?%}')

    def __init__(self, base: Environment):
        self.base = base

    def get_source(self, environment, name):
        source, filename, uptodate = self.base.loader.get_source(self.base, name)
        checks = [uptodate]

        def inline(match):
            text, _, check = self.get_source(environment, match.group(1))
            checks.append(check)
            return text

        source = self.INCLUDE.sub(inline, source)
        return source, filename, lambda: all(check is None or check() for check in checks)


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
        self.forms = {}  # fresh answer forms, rendered once (see compose)
        self.links = {}  # (endpoint, values) -> URL (see url_for)
        # The app's filters and globals, its template files with their includes inlined.
        app_env = flask_app.jinja_env
        self.env = Environment(loader=Inlined(app_env), autoescape=app_env.autoescape,
                               auto_reload=app_env.auto_reload)
        self.env.filters.update(app_env.filters)
        self.env.tests.update(app_env.tests)
        self.env.globals.update(app_env.globals)
        # Within one call of events(), each workspace's unread total is read once: every event
        # of the pass is committed already, so they would all read the same number (a purge
        # hands the dispatcher hundreds of deletions at a time, each with the badge).
        self.pass_state = threading.local()

    def url_for(self, endpoint: str, **values) -> str:
        # Built once per endpoint and values: werkzeug's build cost more than a fragment's
        # other lines (profiled), and a fragment's links repeat (the same conversation).
        key = (endpoint, *sorted(values.items()))
        url = self.links.get(key)
        if url is None:
            if len(self.links) >= LINKS_KEPT:
                self.links.clear()
            url = self.links[key] = self.urls.build(endpoint, values)
        return url

    def widget_file_url(self, attachment_id: int, inline: bool = False) -> str:
        url = self.url_for("widget.attachment", token=widget_service.attachment_link_token(attachment_id))
        return url + ("?inline=1" if inline else "")

    def html(self, template: str, **context) -> str:
        return self.env.get_template(template).render(**self.helpers, **context)

    # -- the chat writes' answers (app/chat/wire.py) ----------------------------------------
    # After a message is stored, its sender gets a fresh, empty form. Such a form differs from
    # the last one of the same kind only in its client id, so it is rendered once per kind
    # with a marker where the id goes, and each answer is that text with a new id put in
    # (rendering it each time was a tenth of a message's cost). A form shown again with what
    # was wrong is rendered in full.
    def compose(self, site, visitor, away: bool, errors=(), email="", body="",
                client_id="", ask_email=False, language="en") -> str:
        """The widget's message form (the page's own partial); `ask_email`: with the chat's
        question for an e-mail address out of band (the team is away); in the visitor's
        `language` (app/widget/language.py)."""
        if errors or email or body:
            with speaking(language):
                return self.html("widget/_compose.html", site=site, visitor=visitor, away=away,
                                 ask_email_oob=ask_email,
                                 form=Filled(errors, email=email, body=body, client_id=client_id))
        key = ("compose", site.site_key, bool(visitor.email), away, ask_email, language)
        text = self.forms.get(key)
        if text is None:
            with speaking(language):
                text = self.keep(key, self.html(
                    "widget/_compose.html", site=site, visitor=visitor, away=away,
                    ask_email_oob=ask_email, form=Filled((), email="", body="", client_id=ID_MARK)))
        return text.replace(ID_MARK, client_id or secrets.token_urlsafe(16))

    def reply_form(self, conversation, token: str, note: bool = False) -> str:
        """A fresh reply form for an agent: the CSRF field is the token their request carried
        (the session's own, just checked), a new client id for the next reply. (Saved replies
        are not in it: its picker asks for them as the agent types.) `note`: in its private
        note mode, as after a note (the next words stay the team's until the agent switches)."""
        key = ("reply", conversation.id, token, note)
        text = self.forms.get(key)
        if text is None:
            text = self.keep(key, self.html(
                "chat/_reply_form.html", conversation=conversation,
                csrf_input=hidden_input(token), note_mode=note,
                reply_form=Filled((), body="", file=None, client_id=ID_MARK)))
        return text.replace(ID_MARK, secrets.token_urlsafe(16))

    def keep(self, key, value):
        self.forms[key] = value
        while len(self.forms) > FORMS_KEPT:
            self.forms.pop(next(iter(self.forms)))
        return value

    def events(self, wanted) -> list[dict]:
        """`wanted`: [(event row, audiences)]. For each, {audience: SSE bytes, or None when the
        event shows that audience nothing}. Runs on the event loop inside the chat writer's
        batch, whose app context and connection it then uses (not pushed a second time on
        the hot path), or in another thread (see the module's doc), which gets its own."""
        inside = has_app_context() and current_app._get_current_object() is self.app
        self.pass_state.unread = {}
        self.pass_state.deleted = {}
        try:
            with contextlib.nullcontext() if inside else self.app.app_context(), thread_connection():
                return [self.event(row, audiences) for row, audiences in wanted]
        finally:
            self.pass_state.unread = self.pass_state.deleted = None

    def unread_total(self, workspace_id: int) -> int:
        memo = getattr(self.pass_state, "unread", None)
        if memo is None:
            return service.unread_total(workspace_id)
        if workspace_id not in memo:
            memo[workspace_id] = service.unread_total(workspace_id)
        return memo[workspace_id]

    def event(self, row, audiences) -> dict:
        if not audiences:
            return {}
        kind = row.kind
        conversation = message = None
        # Read once for both audiences; a visitor's typing or seen marker needs no rows.
        if kind not in (ChatEvent.DELETED, labels.CHANGED) and (
                AGENT in audiences or kind == ChatEvent.MESSAGE):
            # Published from memory (live.Written): the conversation as the write left it.
            conversation = (getattr(row, "conversation", None)
                            or service.CONVERSATION.first(row.conversation_id))
        if kind == ChatEvent.MESSAGE and conversation is not None:
            # Published from memory (live.Written): the write's own message object.
            message = getattr(row, "message", None) or service.MESSAGE.first(row.ref_id)
        out = {}
        for audience in audiences:
            if audience == AGENT:
                out[audience] = encode(self.agent_html(row, conversation, message), row.seq)
                continue
            with speaking(audience_language(audience)):  # "visitor:fr": the widget's words in French
                out[audience] = encode(self.visitor_html(row, conversation, message), row.seq)
        return out

    def agent_html(self, row, conversation, message) -> str | None:
        kind = row.kind
        if kind == ChatEvent.DELETED:
            return self.deleted_notice(row)
        if kind == labels.CHANGED:  # the workspace's, on no conversation
            label = labels.Label.get_or_none(labels.Label.id == row.ref_id)
            return self.html("chat/_labels_changed.html", label=label, ref_id=row.ref_id,
                             ink=labels.ink(label.colour) if label else "")
        if conversation is None:
            return None  # deleted since: nothing of it may be shown
        if kind == ChatEvent.TYPING:
            if row.actor != Message.VISITOR:
                return None
            return self.html("chat/_typing.html", conversation=conversation, oob=True, active=True)
        if kind == ChatEvent.MESSAGE and message is None:
            return None
        if kind == ChatEvent.MESSAGE and not Message.shown_to_visitor(message.sender):
            # A private note: in the open conversation only; the inbox row stays as it was
            # (app/chat/notes.py).
            return self.html("chat/_event_note.html", conversation=conversation, message=message)
        return self.html("chat/_event_agent.html", conversation=conversation, message=message,
                         kind=kind, ref_id=row.ref_id,
                         unread=self.unread_total(row.workspace_id))

    def deleted_notice(self, row) -> str:
        """The agents' notice of a deleted conversation. A retention purge deletes hundreds a
        second, read back in passes of many, and their notices differ only in the
        conversation's id: rendered once a pass and kind of deletion with a marker where the id
        goes, then the id put in."""
        unread = self.unread_total(row.workspace_id)
        by_visitor = row.actor == Message.VISITOR
        memo = getattr(self.pass_state, "deleted", None)
        key = (by_visitor, unread)
        text = memo.get(key) if memo is not None else None
        if text is None:
            text = self.html("chat/_event_deleted.html", conversation_id=CONVERSATION_MARK,
                             by_visitor=by_visitor, unread=unread)
            if memo is not None:
                memo[key] = text
        # A run of deletions read back together (live.Deletions): one notice for each.
        ids = getattr(row, "conversation_ids", None) or (row.conversation_id,)
        return "".join(text.replace(CONVERSATION_MARK, str(cid)) for cid in ids)

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
            # The event's actor is the sender: a note is refused before its message is looked at.
            if (message is None or not Message.shown_to_visitor(row.actor)
                    or not Message.shown_to_visitor(message.sender)):
                return None
            return self.html("widget/_event_message.html", message=message)
        if kind == ChatEvent.READ:
            return self.html("widget/_seen.html", oob=True, seen=True)
        if kind == ChatEvent.STATUS and row.actor in (Conversation.OPEN, Conversation.RESOLVED):
            # Resolved: the satisfaction question comes in; reopened: it goes (app/chat/ratings.py).
            conversation = conversation or service.CONVERSATION.first(row.conversation_id)
            if conversation is None:
                return None
            return self.html("widget/_rating.html", oob=True, conversation=conversation,
                             site=conversation.site)
        return None  # other status and visitor-detail changes are for agents only
