"""The two chat writes, a visitor's message and an agent's reply: one route each, served at
the ASGI root before any framework, answering every case (text or file, name and e-mail,
first message, away mode, limits, htmx or a plain form post, every refusal).

Why no framework here: these two requests are the chat's load. Measured in-process, a
message through Starlette's middleware and routing, a Flask request context and a WTForms
form cost more than the write itself. So the route reads the body and parses the form on
the event loop, then hands the whole request (its rules, its write and its answer) to the
chat writer (app/chat/writer.py) as one job: the rules run in the same transaction as the
write, and the answer is rendered there from the same template files the pages use, without
a request context (app/chat/render.py: URLs built from a bound adapter, the CSRF field is the
token the request carried). The rules are the chat service's (and app/widget/limits.py), the
CSRF rule is app/csrf.py's, the session check app/accounts/sessions.py's, scheme and host
app.security's `forwarded`.

Rare answers (an unknown site, a malformed body, an agent's refused reply re-showing the
conversation page, a visitor's first message swapping the whole chat in) are rendered
through Flask in a request context made from the request's headers, as pages are.
"""

import logging
import re
import secrets
import sys
from io import BytesIO
from urllib.parse import parse_qsl

import anyio
from flask import g
from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from werkzeug.datastructures import MultiDict
from werkzeug.http import dump_cookie

from app.accounts import sessions
from app.chat import notes, service
from app.chat.forms import REPLY_TOO_LONG, ReplyForm
from app.chat.pages import conversation_context
from app.chat.service import ChatError
from app.chat.text import MAX_CHARS
from app.csrf import refusal, token_from
from app.db import thread_connection, write_intent
from app.rendering import render, render_form_errors
from app.security import MESSAGES, error_page, forwarded
from app.widget import hours
from app.widget import language as widget_language
from app.widget import service as widget_service
from app.widget.forms import WidgetMessageForm
from app.widget.pages import chat_context, frame_csp

log = logging.getLogger(__name__)

UPLOAD_LIMIT = 11 * 1024 * 1024  # a 10 MB file plus the form around it
MAX_FIELDS = 64  # more fields than any of our forms has: a 400
TOKEN_HEADER = "X-Lumnar-Visitor"  # the visitor's credential (app/widget/views.py)
NOT_VALID = "This chat session is not valid; reload the page to start again."
VISITOR_PATH = re.compile(r"/widget/([^/]+)/messages")
AGENT_PATH = re.compile(r"/dashboard/conversations/([0-9]{1,18})/messages")
HTML = (b"content-type", b"text/html; charset=utf-8")
TEXT = (b"content-type", b"text/plain; charset=utf-8")


class Answer:
    """What a chat write answers: status, headers as (bytes, bytes), body bytes."""
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list, body: bytes = b""):
        self.status, self.headers, self.body = status, headers, body


def text_answer(status: int, text: str) -> Answer:
    return Answer(status, [TEXT], text.encode())


def from_flask(response) -> Answer:
    return Answer(response.status_code,
                  [(k.lower().encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.items() if k.lower() != "content-length"],
                  response.get_data())


class ThroughFlask:
    """A rare answer, rendered through Flask in a request context once the writer's batch is
    committed, in a worker thread: popping a request context runs Flask's teardown, which
    must never meet the writer's open transaction."""
    __slots__ = ("fn", "args")

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __call__(self) -> Answer:
        with thread_connection():
            return self.fn(*self.args)


class TooLarge(Exception):
    pass


async def read_body(scope, receive) -> bytes:
    """The whole body, refused past the size limit however it is sent (chunked too)."""
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > UPLOAD_LIMIT:
            raise TooLarge()
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > UPLOAD_LIMIT:
            raise TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def parse_form(scope, headers: Headers, body: bytes):
    """(text fields as a MultiDict, (filename, bytes) of an attached file or None), or None for
    a body that is not a form we can read. A URL-encoded form (every text message) is parsed
    here directly; multipart (a file, or htmx's multipart encoding) by Starlette's parser."""
    kind = headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                              max_num_fields=MAX_FIELDS, encoding="utf-8", errors="replace")
        except ValueError:
            return None
        return MultiDict(pairs), None
    if kind != "multipart/form-data":
        return None
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    try:
        form = await Request(scope, receive).form(max_files=1, max_fields=MAX_FIELDS,
                                                 max_part_size=UPLOAD_LIMIT)
    except Exception:  # malformed multipart, too many parts: a 400 below
        return None
    fields, upload = MultiDict(), None
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == "file" and value.filename:
                    upload = (value.filename, await value.read())
            else:
                fields.add(key, value)
    finally:
        await form.close()
    return fields, upload


class ChatWrites:
    """ASGI: the two chat-write routes, and the chat's streams (`streams`: exact path ->
    Starlette endpoint); every other request goes on to `app`.

    The streams are Starlette endpoints (their routes stay in `app` too), called here without
    Starlette's middleware around them: its error and exception layers wrap every `send`, and
    under load those wrappers were an eighth of the web process's CPU (profiled), one call per
    event per stream."""

    def __init__(self, app, flask_app, writer, renderer, streams=None):
        self.app, self.flask_app = app, flask_app
        self.writer, self.renderer = writer, renderer
        self.streams = streams or {}
        self.trust_proxy = flask_app.config["TRUST_PROXY"]
        self.cookie_name = flask_app.config["SESSION_COOKIE_NAME"].encode()
        with flask_app.app_context():
            self.intent = write_intent()  # None on PostgreSQL: its writers do not queue

    def __getattr__(self, name):
        # The Starlette app's own attributes (state, routes, router) read through this layer.
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            route = None
            if path.startswith("/widget/") and (match := VISITOR_PATH.fullmatch(path)):
                route = self.visitor_message
            elif path.startswith("/dashboard/") and (match := AGENT_PATH.fullmatch(path)):
                route = self.agent_reply
            if route is not None:
                answer = await self.handle(route, match.group(1), scope, receive)
                if answer is not None:
                    await send({"type": "http.response.start", "status": answer.status,
                                "headers": answer.headers})
                    await send({"type": "http.response.body", "body": answer.body})
                return
            stream = self.streams.get(path)
            if stream is not None and scope["method"] == "GET":
                try:
                    response = await stream(Request(scope, receive, send))
                except Exception:
                    # As Starlette's error layer would: a 500 that still passes the security
                    # headers' layer, and the traceback in the log.
                    log.exception("chat stream %s failed to open", path)
                    response = PlainTextResponse("Internal Server Error", status_code=500)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def handle(self, route, key, scope, receive) -> Answer | None:
        if scope["method"] != "POST":
            return Answer(405, [TEXT, (b"allow", b"POST")], b"Method Not Allowed")
        # A chat write is coming: a long deletion in another process (the worker's retention
        # purge) commits at its next statement, so the write lock is free when the batch asks.
        if self.intent is not None:
            self.intent.announce()
        try:
            body = await read_body(scope, receive)
        except TooLarge:
            return await anyio.to_thread.run_sync(self.error(scope, 413))
        except ConnectionResetError:
            return None
        headers = Headers(scope=scope)
        parsed = await parse_form(scope, headers, body)
        answer = await self.writer.run(route, key, scope, headers, parsed)
        if isinstance(answer, ThroughFlask):
            answer = await anyio.to_thread.run_sync(answer)
        return answer

    # -- rare answers, rendered through Flask as pages are ---------------------------------
    def flask_context(self, scope):
        """A Flask request context with this request's URL and headers (for rendering). The
        WSGI environ is written out here rather than by Flask's test_request_context, whose
        environ builder cost more than the rest of a message's answer (profiled)."""
        scheme, host = forwarded(scope, self.trust_proxy)
        name, _, port = host.partition(":")
        client = scope.get("client")
        environ = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": scope["path"],
            "QUERY_STRING": "", "SERVER_NAME": name,
            "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": scheme, "wsgi.input": BytesIO(),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.version": (1, 0), "CONTENT_LENGTH": "0",
            "REMOTE_ADDR": client[0] if client else "",
        }
        for key, value in Headers(scope=scope).items():
            if key not in ("content-length", "content-type", "transfer-encoding"):
                environ["HTTP_" + key.upper().replace("-", "_")] = value
        environ["HTTP_HOST"] = host
        return self.flask_app.request_context(environ)

    def error(self, scope, code, title=None, text=None) -> ThroughFlask:
        return ThroughFlask(self._error, scope, code, title, text)

    def _error(self, scope, code, title, text) -> Answer:
        with self.flask_context(scope):
            default = MESSAGES.get(code, (title, text))
            return from_flask(error_page(code, title or default[0], text or default[1]))

    # -- a visitor's message (runs in the chat writer) ----------------------------------------
    def visitor_message(self, site_key, scope, headers, parsed) -> Answer:
        site = widget_service.site_by_key(site_key)
        if site is None:
            return self.unavailable(scope)
        visitor = widget_service.visitor_from_token(site, headers.get(TOKEN_HEADER))
        if visitor is None:
            return text_answer(401, NOT_VALID)
        if parsed is None:
            return self.error(scope, 400)
        fields, upload = parsed
        # The form's rules are for the visitor's name and e-mail (the text's are the chat
        # service's, check_body): a message without them needs no form built.
        details = bool(fields.get("name") or fields.get("email"))
        form = WidgetMessageForm(formdata=fields) if details else None
        conversation = service.current_conversation(visitor)
        language = widget_language.from_header(headers.get("accept-language"), site)
        if form is not None and not form.validate():
            return self.compose(site, visitor, 422, [e for errs in form.errors.values() for e in errs],
                                fields, language=language)
        try:
            message = service.send_visitor_message(
                site, visitor, fields.get("body", "") if form is None else form.body.data or "",
                *(upload or ("", None)),
                name=form.name.data or "" if form else "",
                email=form.email.data or "" if form else "",
                page_url=fields.get("page", ""), conversation=conversation,
                client_id=service.client_id_from(fields.get("client_id")))
        except ChatError as err:
            # The rule's words in the visitor's language, its values (a count, a limit) put in.
            return self.compose(site, visitor, err.status, [widget_language.said(err, language)],
                                fields, language=language)
        if conversation is None or (message.replayed and service.first_message(message)):
            # The first message starts the conversation: swap the whole chat in, stream
            # included (and so again for a retry of that first message: the page that lost
            # the answer still shows the form without a chat).
            return self.whole_chat(scope, site, visitor)
        # The message reaches the page through the stream; here only a fresh form.
        return self.compose(site, visitor, 200, language=language)

    def compose(self, site, visitor, status, errors=(), fields=None, language="en") -> Answer:
        """The message form, fresh, or as sent with what was wrong (then its client id kept:
        nothing was stored under it)."""
        fields = fields or {}
        away = hours.team_away(site)
        html = self.renderer.compose(
            site, visitor, away=away, errors=errors,
            email=(fields.get("email") or "").strip().lower(), body=fields.get("body") or "",
            client_id=service.client_id_from(fields.get("client_id")) or fresh_id(),
            # A message kept while nobody is online: the chat asks where to answer it (the
            # team may have left after the conversation started, so the question comes along).
            ask_email=status == 200 and away and not visitor.email, language=language)
        return Answer(status, [HTML], html.encode())

    def unavailable(self, scope) -> ThroughFlask:
        return ThroughFlask(self._unavailable, scope)

    def _unavailable(self, scope) -> Answer:
        with self.flask_context(scope):
            response = render("widget/unavailable.html", status=404)
            response.headers["Content-Security-Policy"] = frame_csp(None)
            return from_flask(response)

    def whole_chat(self, scope, site, visitor) -> ThroughFlask:
        return ThroughFlask(self._whole_chat, scope, site, visitor)

    def _whole_chat(self, scope, site, visitor) -> Answer:
        with self.flask_context(scope):
            response = render("widget/_chat.html", **chat_context(site, visitor))
            response.headers["HX-Retarget"] = "#chat"
            response.headers["HX-Reswap"] = "innerHTML"
            return from_flask(response)

    # -- an agent's reply (runs in the chat writer) -------------------------------------------
    def agent_reply(self, conversation_id, scope, headers, parsed) -> Answer:
        if parsed is None:
            return self.error(scope, 400)
        fields, upload = parsed
        app = self.flask_app
        data = sessions.decode(app, cookie_value(scope, self.cookie_name)) or {}
        scheme, host = forwarded(scope, self.trust_proxy)
        token = token_from(fields, headers)
        why = refusal(app.secret_key, data, token, scheme=scheme, host=host,
                      referrer=headers.get("referer"),
                      strict=app.config.get("WTF_CSRF_SSL_STRICT", True),
                      max_age=app.config.get("WTF_CSRF_TIME_LIMIT"))
        if why:
            return self.error(scope, 400, "Form expired",
                              "This form was missing its security token or it no longer "
                              "matches your session (for example after you logged out in "
                              "another tab). Reload the page and try again.")
        found = sessions.check(app, data)
        if found is None:
            return self.login_answer(scope, headers)
        row, membership = found
        conversation = (service.WORKSPACE_CONVERSATION.first(int(conversation_id),
                                                             membership.workspace_id)
                        if membership else None)
        if conversation is None:
            return self.error(scope, 404)
        htmx = headers.get("hx-request") == "true"
        body = fields.get("body") or ""
        note = fields.get("kind") == "note"  # the form's private note mode (app/chat/notes.py)
        client_id = service.client_id_from(fields.get("client_id"))
        try:
            if len(body) > MAX_CHARS:
                raise ChatError(REPLY_TOO_LONG, field="body")
            if note:
                notes.post_note(conversation, row.user, body, upload is not None, client_id)
            else:
                service.post_agent_reply(conversation, row.user, body,
                                         service.checked_upload(*(upload or ("", None))),
                                         client_id=client_id)
        except ChatError as err:
            answer = ThroughFlask(self.reply_refused, scope, row, membership, conversation,
                                  fields, err, note)
        else:
            if not htmx:
                # A plain form post (JavaScript off): back to the conversation's page.
                answer = Answer(303, [TEXT, (b"location", self.renderer.url_for(
                    "chat.conversation_show", conversation_id=conversation.id).encode())])
            else:
                # The reply arrives through the stream like everyone else's; here only a
                # fresh form, carrying the token this request proved it holds.
                answer = Answer(200, [HTML],
                                self.renderer.reply_form(conversation, token, note).encode())
        extra = [(b"cache-control", b"no-store")]  # signed in: never kept in a shared cache
        if sessions.seen_due(data):
            name, value, attributes = sessions.refreshed_cookie(app, data)
            extra.append((b"set-cookie", set_cookie(name, value, attributes)))
            # Written after this answer, in a later batch: never on the reply's path.
            self.writer.later(sessions.touch_seen, app, row.id)
        if isinstance(answer, ThroughFlask):
            return ThroughFlask(with_headers, answer, extra)
        answer.headers.extend(extra)
        return answer

    def reply_refused(self, scope, row, membership, conversation, fields, err,
                      note=False) -> Answer:
        with self.flask_context(scope):
            g.user, g.membership, g.session_row = row.user, membership, row
            form = ReplyForm(formdata=fields, meta={"csrf": False})  # checked already
            return from_flask(render_form_errors(
                "chat/conversation.html", "chat/_reply_form.html", form, error=err,
                **conversation_context(conversation, reply_form=form, note_mode=note)))

    def login_answer(self, scope, headers) -> Answer:
        login = self.renderer.url_for("accounts.login_form", next=scope["path"])
        if headers.get("hx-request") == "true":
            # A redirect would be swapped into the page; htmx navigates instead.
            return Answer(401, [TEXT, (b"hx-redirect", login.encode())])
        return Answer(303, [TEXT, (b"location", login.encode())])


def with_headers(answer: ThroughFlask, extra: list) -> Answer:
    made = answer.fn(*answer.args)
    made.headers.extend(extra)
    return made


def fresh_id() -> str:
    return secrets.token_urlsafe(16)


def cookie_value(scope, name: bytes) -> str | None:
    """The named cookie from the request's Cookie headers (no full parse for one value)."""
    for key, value in scope["headers"]:
        if key == b"cookie":
            for part in value.split(b";"):
                k, _, v = part.strip().partition(b"=")
                if k == name:
                    return v.decode("latin-1").strip('"')
    return None


def set_cookie(name, value, attributes) -> bytes:
    """A Set-Cookie header as werkzeug writes it (the same attributes Flask would send)."""
    return dump_cookie(name, value, **attributes).encode("latin-1")
