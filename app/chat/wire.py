"""The two chat writes, a visitor's message and an agent's reply: one Starlette route each at
the ASGI root, answering every case itself (text or file, name and e-mail, first message,
away mode, limits, htmx or a plain form post, every refusal). No hand-off to Flask.

Why Starlette: the chat benchmark measured the a2wsgi + Flask hop at more than the write
itself. One module for both: they share the body reading (size limit), the form parsing and
the answers; the rules are the chat service's (and app/widget/limits.py), the CSRF rule is
app/csrf.py, the session check app/accounts/sessions.py, scheme and host app.security's
`forwarded`. Answers are rendered from the same template files the Flask pages use, inside a
Flask request context made from the request's headers (no body, no before_request hooks), so
that url_for, g and the CSRF field work as on a page.
"""

import sys
from io import BytesIO

import anyio
from flask import g
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from werkzeug.datastructures import MultiDict

from app.accounts import sessions
from app.chat import service
from app.chat.forms import ReplyForm, WidgetMessageForm
from app.chat.service import ChatError
from app.csrf import refusal, token_from
from app.db import thread_connection
from app.paging import whole_number
from app.security import MESSAGES, forwarded

UPLOAD_LIMIT = 11 * 1024 * 1024  # a 10 MB file plus the form around it
MAX_FIELDS = 64  # extra fields are ignored, as Flask ignores them
TOKEN_HEADER = "X-Lumnar-Visitor"  # the visitor's credential (app/widget/views.py)
NOT_VALID = "This chat session is not valid; reload the page to start again."


class Refused(Exception):
    def __init__(self, response):
        self.response = response


async def read_body(request: Request) -> bytes:
    """The whole body, refused past the size limit however it is sent (chunked too)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > UPLOAD_LIMIT:
        raise Refused(None)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > UPLOAD_LIMIT:
            raise Refused(None)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_form(request: Request, body: bytes):
    """(text fields as a MultiDict, (filename, bytes) of an attached file or None), or None for
    a body that is not a form we can read."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=MAX_FIELDS,
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


def routes(flask_app) -> list[Route]:
    trust_proxy = flask_app.config["TRUST_PROXY"]
    cookie_name = flask_app.config["SESSION_COOKIE_NAME"]

    def flask_context(request: Request):
        """A Flask request context with this request's URL and headers (for rendering). The
        WSGI environ is written out here rather than by Flask's test_request_context, whose
        environ builder cost more than the rest of a message's answer (profiled)."""
        scheme, host = forwarded(request.scope, trust_proxy)
        name, _, port = host.partition(":")
        environ = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": request.url.path,
            "QUERY_STRING": "", "SERVER_NAME": name,
            "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": scheme, "wsgi.input": BytesIO(),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.version": (1, 0), "CONTENT_LENGTH": "0",
            "REMOTE_ADDR": (request.client.host if request.client else ""),
        }
        for key, value in request.headers.items():
            if key not in ("content-length", "content-type", "transfer-encoding"):
                environ["HTTP_" + key.upper().replace("-", "_")] = value
        environ["HTTP_HOST"] = host
        return flask_app.request_context(environ)

    def as_starlette(response) -> Response:
        """A Flask response (rendered in flask_context) as a Starlette one."""
        return Response(response.get_data(), status_code=response.status_code,
                        headers={k: v for k, v in response.headers.items()
                                 if k.lower() != "content-length"})

    def error(request, code, title=None, text=None):
        from app.security import error_page

        with flask_context(request), thread_connection():
            default = MESSAGES.get(code, (title, text))
            return as_starlette(error_page(code, title or default[0], text or default[1]))

    # --- a visitor's message --------------------------------------------------------------

    def visitor_message(request, site_key, token, parsed):
        from app.rendering import render
        from app.widget.views import chat_context, compose_context, frame_csp

        with flask_context(request), thread_connection():
            site = service.site_by_key(site_key)
            if site is None:
                response = render("widget/unavailable.html", status=404)
                response.headers["Content-Security-Policy"] = frame_csp(None)
                return as_starlette(response)
            visitor = service.visitor_from_token(site, token)
            if visitor is None:
                return PlainTextResponse(NOT_VALID, status_code=401)
            if parsed is None:
                return error(request, 400)
            fields, upload = parsed
            # The form's rules are for the visitor's name and e-mail (the text's are the chat
            # service's, check_body): a message without them needs no form built.
            details = bool(fields.get("name") or fields.get("email"))
            form = WidgetMessageForm(formdata=fields) if details else None
            conversation = service.current_conversation(visitor)
            try:
                if form is not None and not form.validate():
                    raise ChatError(" ".join(e for errs in form.errors.values() for e in errs))
                message = service.send_visitor_message(
                    site, visitor, fields.get("body", "") if form is None
                    else form.body.data or "", *(upload or ("", None)),
                    name=form.name.data or "" if form else "",
                    email=form.email.data or "" if form else "",
                    page_url=fields.get("page", ""), conversation=conversation,
                    client_id=service.client_id_from(fields.get("client_id")))
            except ChatError as err:
                form = form or WidgetMessageForm(formdata=fields)
                form.form_errors.append(err.message)
                return as_starlette(render("widget/_compose.html", status=err.status,
                                           **compose_context(site, visitor, form)))
            if conversation is None or (message.replayed and service.first_message(message)):
                # The first message starts the conversation: swap the whole chat in, stream
                # included (and so again for a retry of that first message: the page that
                # lost the answer still shows the form without a chat).
                response = render("widget/_chat.html", **chat_context(site, visitor))
                response.headers["HX-Retarget"] = "#chat"
                response.headers["HX-Reswap"] = "innerHTML"
                return as_starlette(response)
            # The message reaches the page through the stream; here only a fresh form.
            return as_starlette(render("widget/_compose.html", **compose_context(site, visitor)))

    async def message_create(request: Request):
        try:
            body = await read_body(request)
        except Refused:
            return await anyio.to_thread.run_sync(error, request, 413)
        parsed = await parse_form(request, body)
        return await anyio.to_thread.run_sync(
            visitor_message, request, request.path_params["site_key"],
            request.headers.get(TOKEN_HEADER), parsed)

    # --- an agent's reply -------------------------------------------------------------------

    def agent_reply(request, conversation_id, data, parsed):
        from app.chat.views import conversation_context
        from app.rendering import render

        if parsed is None:
            return error(request, 400)
        fields, upload = parsed
        scheme, host = forwarded(request.scope, trust_proxy)
        why = refusal(flask_app.secret_key, data or {},
                           token_from(fields, request.headers), scheme=scheme, host=host,
                           referrer=request.headers.get("referer"),
                           strict=flask_app.config.get("WTF_CSRF_SSL_STRICT", True),
                           max_age=flask_app.config.get("WTF_CSRF_TIME_LIMIT"))
        if why:
            return error(request, 400, "Form expired",
                         "This form was missing its security token or it no longer matches "
                         "your session (for example after you logged out in another tab). "
                         "Reload the page and try again.")
        found = sessions.check(flask_app, data)
        if found is None:
            return login_answer(request)
        row, membership = found
        with flask_context(request), thread_connection():
            g.user, g.membership, g.session_row = row.user, membership, row
            conversation = (service.WORKSPACE_CONVERSATION.first(conversation_id,
                                                                 membership.workspace_id)
                            if membership and whole_number(str(conversation_id)) else None)
            if conversation is None:
                return error(request, 404)
            form = ReplyForm(formdata=fields, meta={"csrf": False})  # checked above
            try:
                if not form.validate():
                    raise ChatError(" ".join(form.body.errors) or "Check the form.", field="body")
                service.post_agent_reply(conversation, row.user, form.body.data or "",
                                         service.checked_upload(*(upload or ("", None))),
                                         client_id=service.client_id_from(
                                             fields.get("client_id")))
            except ChatError as err:
                form.form_errors.append(err.message)
                response = as_starlette(render(
                    "chat/conversation.html", "chat/_reply_form.html", status=err.status,
                    **conversation_context(conversation, reply_form=form)))
            else:
                if request.headers.get("hx-request") != "true":
                    # A plain form post (JavaScript off): back to the conversation's page.
                    from flask import url_for

                    response = RedirectResponse(url_for("chat.conversation_show",
                                                        conversation_id=conversation.id),
                                                status_code=303)
                else:
                    # The reply arrives through the stream like everyone else's; here only a
                    # fresh form.
                    response = as_starlette(render(
                        "chat/_reply_form.html", conversation=conversation,
                        reply_form=ReplyForm(formdata=None),
                        saved=list(service.saved_replies(conversation.workspace_id))))
        response.headers["Cache-Control"] = "no-store"  # signed in: never kept in a shared cache
        if sessions.seen_due(data):
            name, value, attributes = sessions.refreshed_cookie(flask_app, data)
            response.set_cookie(name, value, **attributes)
            response.background = BackgroundTask(anyio.to_thread.run_sync,
                                                 sessions.touch_seen, flask_app, row.id)
        return response

    def login_answer(request):
        from flask import url_for

        with flask_context(request):
            login = url_for("accounts.login_form", next=request.url.path)
        if request.headers.get("hx-request") == "true":
            # A redirect would be swapped into the page; htmx navigates instead.
            return Response(status_code=401, headers={"HX-Redirect": login})
        return RedirectResponse(login, status_code=303)

    async def conversation_reply(request: Request):
        try:
            body = await read_body(request)
        except Refused:
            return await anyio.to_thread.run_sync(error, request, 413)
        parsed = await parse_form(request, body)
        data = sessions.decode(flask_app, request.cookies.get(cookie_name))
        return await anyio.to_thread.run_sync(
            agent_reply, request, request.path_params["conversation_id"], data, parsed)

    return [
        Route("/widget/{site_key}/messages", message_create, methods=["POST"],
              name="widget.message_create"),
        Route("/dashboard/conversations/{conversation_id:int}/messages", conversation_reply,
              methods=["POST"], name="chat.conversation_reply"),
    ]
