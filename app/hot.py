"""The two hot writes, a visitor's message and an agent's reply, served from Starlette routes.

Why: the chat benchmark measured the bare stack's insert through a2wsgi + Flask at well under
half the rate of the same insert in a Starlette endpoint; for a chat message that hop cost
as much as the message's own work.

A visitor's message: Starlette takes the plain case itself and calls the same service
functions, the same rate limit (app/widget/limits.py) and the same fragment file the Flask
view uses. It only ever *accepts*: anything else (a file, the visitor's name or e-mail, the
conversation's first message, a body that fails a check, a limit reached, a non-htmx post,
an unknown site or token) is handed untouched to the Flask view, which answers it by the
full rules. So this path never says yes where Flask would say no, and has no error pages.

An agent's reply, the same way: the route accepts a plain text reply from a signed-in
member whose session cookie, session row, CSRF token (and, on https, same-origin referrer)
pass the checks Flask makes (the same session functions; flask-wtf's token rule), into a
conversation of their workspace. Anything else, including a session whose "seen" time is due
to move, goes to the Flask view.
"""

import time
from urllib.parse import urlsplit

import anyio
from markupsafe import Markup
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from app.accounts import sessions
from app.chat import service
from app.chat.forms import ReplyForm, WidgetMessageForm
from app.chat.service import ChatError
from app.chat.views import UPLOAD_LIMIT
from app.csrf import SESSION_KEY, hidden_input, refusal, sign
from app.db import thread_connection
from app.paging import whole_number
from app.security import forwarded
from app.widget import limits
from app.widget.views import TOKEN_HEADER

VISITOR_FIELDS = {"body", "page", "email", "name", "file"}
REPLY_FIELDS = {"body", "file", "csrf_token"}


def replay(body: bytes, receive):
    """A `receive` that hands the already-read body to the next app, then waits as before."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def read_plain_form(request: Request, body: bytes, allowed: set, empty: set) -> dict | None:
    """The form's text fields, or None when it is anything but plain text: a field not in
    `allowed`, one twice, a file attached, or a value in a field of `empty` (profile details,
    which only the Flask view's form validates)."""
    try:
        form = await Request(request.scope, replay(body, request.receive)).form(
            max_files=1, max_fields=len(allowed))
    except Exception:  # malformed multipart, too many parts: Flask says what is wrong
        return None
    fields = {}
    try:
        for key, value in form.multi_items():
            if key not in allowed or key in fields:
                return None
            if isinstance(value, UploadFile):
                if value.filename:
                    return None  # an attachment: sniffed, limited and stored by the Flask view
                continue
            fields[key] = value
    finally:
        await form.close()  # an empty file input still leaves a spooled file to close
    if any(fields.get(name) for name in empty):
        return None
    return fields


def csrf_ok(flask_app, data: dict, token: str | None) -> bool:
    return refusal(flask_app.secret_key, data, token, scheme="http", host="",
                        referrer=None, strict=False) is None


def csrf_input(flask_app, data: dict) -> Markup:
    return hidden_input(sign(flask_app.secret_key, data[SESSION_KEY]))


def routes(flask_app, to_flask) -> list[Route]:
    """Starlette routes for the hot write; `to_flask` is the ASGI app that serves Flask."""
    url_map = flask_app.url_map
    trust_proxy = flask_app.config["TRUST_PROXY"]
    cookie_name = flask_app.config["SESSION_COOKIE_NAME"]

    def path_for(endpoint, **values):
        # The fragment's url_for, built from the same URL map without a Flask request.
        return url_map.bind("localhost").build(endpoint, values)

    def accept(site_key: str, token: str | None, text: str, page: str) -> str | None:
        """Posts the message and renders the fresh form; None hands the request to Flask."""
        with flask_app.app_context(), thread_connection():
            site = service.site_by_key(site_key)
            visitor = service.visitor_from_token(site, token) if site else None
            if visitor is None:
                return None
            conversation = service.current_conversation(visitor)
            if conversation is None:
                return None  # the first message swaps the whole chat in: Flask does that
            try:
                body = service.check_body(text, has_file=False)
            except ChatError:
                return None
            away = not service.agents_online(site.workspace_id)
            if away and not visitor.email:
                return None  # Flask asks for the e-mail
            if not limits.message_allowed(site, visitor):
                return None
            service.post_visitor_message(site, visitor, body, page_url=page,
                                         conversation=conversation)
            template = flask_app.jinja_env.get_template("widget/_compose.html")
            return template.render(site=site, visitor=visitor, away=away, url_for=path_for,
                                   form=WidgetMessageForm(formdata=None))

    def reply(cookie, token, referrer, https, host, conversation_id, text) -> str | None:
        """Posts an agent's reply and renders the fresh form; None hands the request to Flask."""
        if whole_number(str(conversation_id)) is None:
            return None  # past SQLite's integers: Flask's route does not match it (404)
        found = sessions.from_cookie(flask_app, cookie)
        if found is None:
            return None
        data, row, membership = found
        if int(time.time()) - data.get("seen", 0) > sessions.SEEN_GRANULARITY:
            return None  # Flask moves the session's "seen" on and sends the cookie again
        if not csrf_ok(flask_app, data, token):
            return None
        if https and flask_app.config.get("WTF_CSRF_SSL_STRICT", True):
            parts = urlsplit(referrer or "")
            if (parts.scheme, parts.netloc) != ("https", host):
                return None  # flask-wtf's same-origin rule for https: Flask judges it
        with flask_app.app_context(), thread_connection():
            conversation = service.WORKSPACE_CONVERSATION.first(conversation_id,
                                                                membership.workspace_id)
            if conversation is None:
                return None
            try:
                body = service.check_body(text, has_file=False)
            except ChatError:
                return None
            service.post_agent_reply(conversation, row.user, body)
            template = flask_app.jinja_env.get_template("chat/_reply_form.html")
            return template.render(
                conversation=conversation, url_for=path_for,
                reply_form=ReplyForm(formdata=None, meta={"csrf": False}),
                csrf_input=csrf_input(flask_app, data),
                saved=list(service.saved_replies(conversation.workspace_id)))

    # Scheme and host as Flask sees them (the same ProxyFix rule), for flask-wtf's https check.
    def secure(request: Request) -> bool:
        return forwarded(request.scope, trust_proxy)[0] == "https"

    def host(request: Request) -> str:
        return forwarded(request.scope, trust_proxy)[1]

    async def plain_body(request: Request):
        """The body of a plain htmx POST of a sensible size, or None (then Flask reads it)."""
        length = request.headers.get("content-length", "")
        if (request.method != "POST" or request.headers.get("hx-request") != "true"
                or not length.isdigit() or int(length) > UPLOAD_LIMIT):
            return None
        return await request.body()

    async def visitor_message(request: Request, body: bytes):
        fields = await read_plain_form(request, body, VISITOR_FIELDS, {"email", "name"})
        if fields is None:
            return None
        html = await anyio.to_thread.run_sync(
            accept, request.path_params["site_key"], request.headers.get(TOKEN_HEADER),
            fields.get("body", ""), fields.get("page", ""))
        return html, False

    async def agent_reply(request: Request, body: bytes):
        fields = await read_plain_form(request, body, REPLY_FIELDS, set())
        if fields is None:
            return None
        token = (fields.get("csrf_token") or request.headers.get("x-csrftoken")
                 or request.headers.get("x-csrf-token"))
        html = await anyio.to_thread.run_sync(
            reply, request.cookies.get(cookie_name), token, request.headers.get("referer"),
            secure(request), host(request), request.path_params["conversation_id"],
            fields.get("body", ""))
        return html, True

    class HotWrite:
        """Answers the plain case itself, or hands the request (body replayed) to Flask."""

        def __init__(self, handle):
            self.handle = handle

        async def __call__(self, scope, receive, send):
            request = Request(scope, receive)
            body = await plain_body(request)
            if body is None:
                return await to_flask(scope, receive, send)
            answered = await self.handle(request, body)
            if answered is None or answered[0] is None:
                return await to_flask(scope, replay(body, receive), send)
            html, signed_in = answered
            # The security headers come from the ASGI root; only "signed in" is known here.
            response = HTMLResponse(html, headers={"Cache-Control": "no-store"} if signed_in else None)
            await response(scope, receive, send)

    return [Route("/widget/{site_key}/messages", HotWrite(visitor_message)),
            Route("/dashboard/conversations/{conversation_id:int}/messages", HotWrite(agent_reply))]
