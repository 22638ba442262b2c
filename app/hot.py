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

An agent's reply: the Flask view itself, called directly in a worker thread (see InThread),
because its rules (session, CSRF, workspace) are Flask's and are best not written twice.
"""

import io

import anyio
from a2wsgi.wsgi import build_environ
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.chat import service
from app.chat.forms import WidgetMessageForm
from app.chat.service import ChatError
from app.chat.views import UPLOAD_LIMIT
from app.db import thread_connection
from app.security import apply_headers
from app.widget import limits
from app.widget.views import TOKEN_HEADER

FORM_FIELDS = {"body", "page", "email", "name", "file"}


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


async def read_plain_form(request: Request, body: bytes) -> dict | None:
    """The message form's text fields, or None when it is anything but plain text."""
    try:
        form = await Request(request.scope, replay(body, request.receive)).form(
            max_files=1, max_fields=len(FORM_FIELDS))
    except Exception:  # malformed multipart, too many parts: Flask says what is wrong
        return None
    fields = {}
    try:
        for key, value in form.multi_items():
            if key not in FORM_FIELDS or key in fields:
                return None
            if isinstance(value, UploadFile):
                if value.filename:
                    return None  # an attachment: sniffed, limited and stored by the Flask view
                continue
            fields[key] = value
    finally:
        await form.close()  # an empty file input still leaves a spooled file to close
    if fields.get("email") or fields.get("name"):
        return None  # profile details are validated by the Flask view's form
    return fields


def routes(flask_app, to_flask) -> list[Route]:
    """Starlette routes for the hot write; `to_flask` is the ASGI app that serves Flask."""
    url_map = flask_app.url_map
    trust_proxy = flask_app.config["TRUST_PROXY"]

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

    def secure(request: Request) -> bool:
        if trust_proxy:
            return request.headers.get("x-forwarded-proto", request.url.scheme) == "https"
        return request.url.scheme == "https"

    async def answer(request: Request):
        """A response, or the `receive` with which Flask is to read the request."""
        length = request.headers.get("content-length", "")
        if (request.method != "POST" or request.headers.get("hx-request") != "true"
                or not length.isdigit() or int(length) > UPLOAD_LIMIT):
            return request.receive
        body = await request.body()
        fields = await read_plain_form(request, body)
        if fields is None:
            return replay(body, request.receive)
        html = await anyio.to_thread.run_sync(
            accept, request.path_params["site_key"], request.headers.get(TOKEN_HEADER),
            fields.get("body", ""), fields.get("page", ""))
        if html is None:
            return replay(body, request.receive)
        response = HTMLResponse(html)
        apply_headers(response.headers, secure(request), signed_in=False)
        return response

    class VisitorMessage:
        async def __call__(self, scope, receive, send):
            result = await answer(Request(scope, receive))
            if isinstance(result, Response):
                await result(scope, receive, send)
            else:
                await to_flask(scope, result, send)

    return [Route("/widget/{site_key}/messages", VisitorMessage()),
            Route("/dashboard/conversations/{conversation_id:int}/messages", InThread(flask_app))]


class InThread:
    """An agent's reply: the Flask view itself, called in one worker thread with the body
    already read, instead of through a2wsgi (which crosses between the event loop and its
    thread for every piece of the body and of the answer). Same view, same session, CSRF
    and workspace checks, by construction."""

    def __init__(self, flask_app):
        self.flask_app = flask_app

    def call(self, scope, body: bytes):
        environ = build_environ(scope, io.BytesIO(body))
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer["status"], answer["headers"] = int(status.split(" ", 1)[0]), headers

        chunks = self.flask_app(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return answer["status"], answer["headers"], content

    async def __call__(self, scope, receive, send):
        request = Request(scope, receive)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > UPLOAD_LIMIT:
            body = b""  # not read: Flask refuses it (413) from the header alone
        else:
            body = await request.body()
        status, headers, content = await anyio.to_thread.run_sync(self.call, scope, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                for k, v in headers]})
        await send({"type": "http.response.body", "body": content})
