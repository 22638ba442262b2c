"""The visitor's message served by Starlette (app/hot.py) keeps every rule of the Flask view.

Each test sends through the real ASGI app (Starlette routes, then a2wsgi + Flask), encoded as
the widget's htmx sends it (multipart), and compares with what the Flask view alone answers.
"""

import httpx
import pytest

from app.asgi import build
from app.chat.models import Attachment, Message
from app.security import CSP, DEFAULT_HEADERS
from app.widget.views import TOKEN_HEADER
from tests.chat_fixtures import (  # noqa: F401  (fixtures by name)
    WidgetVisitor,
    chat_state,
    conversation_fixture,
    count,
    online_fixture,
    png_bytes,
    rival_fixture,
    run_async,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import strip_csrf


def multipart(boundary: str, fields: dict, file=None) -> bytes:
    """A form encoded as browsers encode it (RFC 7578), an empty file input included."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode()
             + v.encode() + b"\r\n" for k, v in fields.items()]
    content, filename, ctype = file or (b"", "", "application/octet-stream")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
                 + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


class AsgiVisitor:
    """The same visitor, posting through the ASGI app the web process serves."""

    def __init__(self, app, visitor: WidgetVisitor):
        self.asgi = build(app)
        self.visitor = visitor

    def send(self, htmx=True, token=None, files=None, **fields):
        boundary = "lumnar-test-boundary-7d1f"
        body = multipart(boundary, fields, files)
        headers = {TOKEN_HEADER: token or self.visitor.token,
                   "Content-Type": f"multipart/form-data; boundary={boundary}"}
        if htmx:
            headers["HX-Request"] = "true"

        async def post():
            transport = httpx.ASGITransport(app=self.asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
                return await http.post(self.visitor.url("messages"), content=body, headers=headers)

        return run_async(post())


@pytest.fixture
def asgi_visitor(app, visitor, conversation):
    return AsgiVisitor(app, visitor)


def test_a_plain_message_through_starlette_is_stored_and_answers_the_same_fresh_form(
        app, asgi_visitor, visitor):
    response = asgi_visitor.send(body="Is the blue one in stock?", page="https://shop.example.com/p/1")
    assert response.status_code == 200
    flask_answer = visitor.send("And the red one?")
    assert response.text == text(flask_answer)  # the very same fragment
    assert [m.body for m in Message.select().order_by(Message.id)][-2:] == [
        "Is the blue one in stock?", "And the red one?"]
    # The same security headers as any page of ours (added at the ASGI root).
    assert response.headers["Content-Security-Policy"] == CSP
    for name, value in DEFAULT_HEADERS.items():
        assert response.headers[name] == value


@pytest.mark.parametrize("fields, status, says", [
    ({"body": ""}, 422, "Write a message or attach a file."),
    ({"body": "x" * 5001}, 422, "at most 5,000 characters"),
    ({"body": "hi", "email": "not-an-address"}, 422, "Enter a valid e-mail address"),
])
def test_bad_input_is_answered_by_the_flask_rules_and_changes_nothing(asgi_visitor, fields,
                                                                      status, says):
    before = chat_state()
    response = asgi_visitor.send(**fields)
    assert response.status_code == status
    assert says in response.text
    assert chat_state() == before


def test_a_forged_token_is_refused_and_nothing_is_stored(asgi_visitor):
    before = chat_state()
    response = asgi_visitor.send(body="hello", token="forged.token.value")
    assert response.status_code == 401
    assert chat_state() == before


def test_an_attachment_goes_through_the_flask_view_and_is_stored(asgi_visitor):
    response = asgi_visitor.send(body="", files=(png_bytes(), "photo.png", "image/png"))
    assert response.status_code == 200
    assert count(Attachment) == 1


def test_a_plain_form_post_without_htmx_is_left_to_flask(asgi_visitor):
    response = asgi_visitor.send(htmx=False, body="no javascript here")
    assert response.status_code in (200, 303)
    assert count(Message, Message.body == "no javascript here") == 1


def test_the_first_message_of_a_visitor_still_opens_the_whole_chat(app, site, online):
    newcomer = WidgetVisitor.arrive(app, site.site_key)
    response = AsgiVisitor(app, newcomer).send(body="First words")
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#chat"


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_the_rate_limit_counts_messages_from_both_paths_together(asgi_visitor, visitor):
    # The conversation fixture's first message was the first of this minute's twenty.
    for i in range(9):
        assert visitor.send(f"through flask {i}").status_code == 200
    for i in range(10):
        assert asgi_visitor.send(body=f"through starlette {i}").status_code == 200
    before = chat_state()
    response = asgi_visitor.send(body="one too many")
    assert response.status_code == 429
    assert "Too many attempts in a short time." in response.text
    assert chat_state() == before


def test_the_plain_message_is_answered_without_flask_and_an_attachment_is_not(app, asgi_visitor):
    """Which requests the hot path keeps: Flask here is a stand-in that only says it was asked."""
    asgi_visitor.asgi = flask_stand_in_app(app)
    plain = asgi_visitor.send(body="Plain words", page="https://shop.example.com/")
    assert plain.status_code == 200 and 'id="compose"' in plain.text
    assert count(Message, Message.body == "Plain words") == 1
    with_file = asgi_visitor.send(body="", files=(png_bytes(), "photo.png", "image/png"))
    with_email = asgi_visitor.send(body="hi", email="guest@example.com")
    assert (with_file.status_code, with_email.status_code) == (418, 418)


# --- the agent's reply, through the Flask view called in one thread ---------------------------


def asgi_post(asgi, path, cookie=None, data=None, headers=None, base_url="http://localhost"):
    """POST through an ASGI app, with the dashboard's session cookie when given."""
    async def post():
        transport = httpx.ASGITransport(app=asgi)
        cookies = {"lumnar_session": cookie} if cookie else None
        async with httpx.AsyncClient(transport=transport, base_url=base_url,
                                     cookies=cookies) as http:
            return await http.post(path, data=data, headers=headers or {})

    return run_async(post())


def agent_reply(app, auth, conversation, body, csrf=True, cookie=True):
    headers = {"HX-Request": "true"}
    if csrf:
        headers["X-CSRFToken"] = auth.csrf()
    return asgi_post(build(app), f"/dashboard/conversations/{conversation.id}/messages",
                     auth.get_cookie("lumnar_session").value if cookie else None,
                     {"body": body}, headers)


def test_an_agent_reply_through_the_asgi_app_is_stored_and_answers_a_fresh_form(
        app, auth, conversation):
    response = agent_reply(app, auth, conversation, "We do ship to Iceland.")
    assert response.status_code == 200
    assert 'id="reply-form"' in response.text
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert count(Message, Message.body == "We do ship to Iceland.") == 1


@pytest.mark.parametrize("csrf, cookie, status", [(False, True, 400), (True, False, 400)])
def test_an_agent_reply_without_csrf_token_or_session_is_refused_and_stores_nothing(
        app, auth, conversation, csrf, cookie, status):
    before = chat_state()
    response = agent_reply(app, auth, conversation, "should not land", csrf=csrf, cookie=cookie)
    assert response.status_code == status
    assert chat_state() == before


def test_an_agent_cannot_reply_in_another_workspaces_conversation_through_the_asgi_app(
        app, auth, conversation, rival):
    before = chat_state()
    response = agent_reply(app, auth, rival["conversation"], "not mine")
    assert response.status_code == 404
    assert chat_state() == before


def flask_stand_in_app(app):
    """The hot routes alone, with Flask replaced by a stand-in that only says it was asked."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    from app import hot

    async def flask_stand_in(scope, receive, send):
        await PlainTextResponse("reached Flask", status_code=418)(scope, receive, send)

    return Starlette(routes=hot.routes(app, flask_stand_in))


def test_a_plain_agent_reply_is_answered_without_flask_with_the_same_fragment(
        app, auth, conversation):
    flask_answer = auth.post(f"/dashboard/conversations/{conversation.id}/messages",
                             data={"body": "From Flask"},
                             headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert flask_answer.status_code == 200

    hot_answer = asgi_post(flask_stand_in_app(app),
                           f"/dashboard/conversations/{conversation.id}/messages",
                           auth.get_cookie("lumnar_session").value, {"body": "From Starlette"},
                           {"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert hot_answer.status_code == 200
    assert strip_csrf(hot_answer.text) == strip_csrf(text(flask_answer))
    assert 'name="csrf_token" type="hidden" value="' in hot_answer.text
    assert count(Message, Message.body == "From Starlette") == 1


def test_an_agent_session_due_to_move_its_seen_time_goes_to_flask(app, auth, conversation):
    token = auth.csrf()  # valid: only "seen" is due
    with auth.session_transaction() as session:
        session["seen"] -= 120  # Flask must send the cookie again with a new "seen"
    cookie = auth.get_cookie("lumnar_session").value

    response = asgi_post(flask_stand_in_app(app),
                         f"/dashboard/conversations/{conversation.id}/messages", cookie,
                         {"body": "later"}, {"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 418
    assert count(Message, Message.body == "later") == 0


@pytest.mark.config(WTF_CSRF_SSL_STRICT=True)
@pytest.mark.parametrize("referer, status", [(None, 418), ("https://evil.example/", 418),
                                             ("https://localhost/dashboard/inbox", 200)])
def test_on_https_an_agent_reply_needs_a_same_origin_referer_or_goes_to_flask(
        app, auth, conversation, referer, status):
    token, cookie = auth.csrf(), auth.get_cookie("lumnar_session").value
    headers = {"HX-Request": "true", "X-CSRFToken": token, **({"Referer": referer} if referer else {})}

    response = asgi_post(flask_stand_in_app(app),
                         f"/dashboard/conversations/{conversation.id}/messages", cookie,
                         {"body": "over https"}, headers, base_url="https://localhost")
    assert response.status_code == status
    assert count(Message, Message.body == "over https") == (1 if status == 200 else 0)
