"""Every response the web process sends, from Flask or from Starlette (the streams, the hot
writes, their errors), carries our security headers: one layer at the ASGI root adds them.

The walk reads both apps' URL maps (tests/route_walk.py), so a new route is covered without
anyone adding it here. It runs against a real uvicorn on loopback: the streams need the app's
lifespan, and a stream's headers are read and the stream closed without waiting for it.
"""


import httpx
import pytest
from starlette.applications import Starlette

from app.asgi import build
from app.chat import wire
from app.security import CSP, DEFAULT_HEADERS, HSTS, SecurityHeaders
from app.widget import service as widget_service
from app.widget.views import TOKEN_HEADER
from tests.chat_fixtures import run_async
from tests.conftest import Client, log_in
from tests.route_walk import asgi_client, every_route, session_cookie, world
from tests.served import LiveServer

HTTPS = {"X-Forwarded-Proto": "https"}  # what the reverse proxy says (LUMNAR_TRUST_PROXY=1)


def head_of(http: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    """The status and headers only: the body (an endless stream, for the streams) is not read."""
    with http.stream(method, path, **kwargs) as response:
        return response


def check(response: httpx.Response, https: bool, where: str) -> None:
    h = response.headers
    for name, value in DEFAULT_HEADERS.items():
        assert h.get(name) == value, (where, response.status_code, name)
    csp = h.get("Content-Security-Policy", "")
    assert "default-src" in csp and "'unsafe-inline'" not in csp, (where, csp)
    if csp == CSP:
        assert h.get("X-Frame-Options") == "DENY", where
    assert "hx-request" in h.get("Vary", "").lower(), where
    assert (h.get("Strict-Transport-Security") == HSTS) is https, (where, response.status_code)


@pytest.fixture
def owner_world(app, user):
    return world(app, user)


@pytest.mark.config(TRUST_PROXY=1)
def test_every_route_of_both_apps_answers_with_the_security_headers(app, user, owner_world):
    owner = Client(app.test_client())
    log_in(owner)
    signed_in = {"Cookie": f'{app.config["SESSION_COOKIE_NAME"]}={session_cookie(app, owner)}'}
    root = build(app)
    routes = every_route(app, root, owner_world["params"])
    # Each address also once with a method no route of ours takes: its 405 answer.
    wrong_method = [(path, "DELETE", name) for path, name in {p: n for p, _, n in routes}.items()]
    answered = {}
    with LiveServer(root) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        for path, method, name in routes + wrong_method:
            where = f"{method} {path} ({name})"
            askers = [("anonymous", False, {}), ("anonymous", True, HTTPS),
                      ("owner", True, {**HTTPS, **signed_in})]
            for who, https, headers in askers[1:2] if method == "DELETE" else askers:
                # An empty cookie jar each time: nothing one answer sets leaks into the next.
                http.cookies.clear()
                response = head_of(http, method, path, headers=headers)
                check(response, https, f"{who} {where}")
                answered[(who, https, method, path)] = response
                if who == "owner" and response.status_code < 400:
                    # Flask still decides this one: a signed-in answer is never cached.
                    assert response.headers.get("Cache-Control") == "no-store", where

        # What the walk cannot reach with dummy values: the visitor's stream with its ticket.
        conversation, visitor = owner_world["conversation"], owner_world["visitor"]
        with app.app_context():
            ticket = widget_service.stream_ticket(conversation, visitor.record())
        visitor_stream = head_of(http, "GET", f"/sse/visitor?ticket={ticket}", headers=HTTPS)
        check(visitor_stream, True, "visitor stream")
        frame = head_of(http, "GET", f"/widget/{visitor.site_key}", headers=HTTPS)
        check(frame, True, "widget frame")
        missing = head_of(http, "GET", "/no-such-page", headers=HTTPS)
        check(missing, True, "an address no route has")

    def status(who, path, method="GET", https=True):
        return answered[(who, https, method, path)].status_code

    # The walk reached both kinds of answer from both apps, streams included.
    assert status("owner", "/sse/dashboard") == 200
    assert status("anonymous", "/sse/dashboard") == 401
    assert status("anonymous", "/sse/visitor") == 403
    assert visitor_stream.status_code == 200
    assert visitor_stream.headers["content-type"].startswith("text/event-stream")
    assert status("owner", "/dashboard/inbox") == 200 and status("owner", "/staff/") == 200
    assert status("anonymous", "/dashboard/inbox") in (302, 303, 401)
    assert status("anonymous", "/logout", "DELETE") == 405
    assert status("anonymous", "/login", "POST") == 400  # no CSRF token
    assert missing.status_code == 404
    # A page that sets its own policy keeps it: the widget frame may be framed by the site.
    assert frame.status_code == 200
    assert "frame-ancestors https://shop.example.com" in frame.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in frame.headers


@pytest.mark.config(TRUST_PROXY=1)
def test_the_answers_the_chat_writes_make_themselves_carry_the_headers(app, user, owner_world):
    from app.chat.render import Renderer
    from app.chat.writer import Writer

    # The chat writes alone, in front of an app that answers nothing.
    root = SecurityHeaders(wire.ChatWrites(Starlette(), app, Writer(app), Renderer(app)),
                           app.config["TRUST_PROXY"])
    owner = Client(app.test_client())
    log_in(owner)
    visitor, conversation = owner_world["visitor"], owner_world["conversation"]
    token = owner.csrf()  # first: it puts the token's secret into the session cookie

    async def both():
        async with asgi_client(root) as http:
            message = await http.post(
                f"/widget/{visitor.site_key}/messages", data={"body": "And in blue?"},
                headers={**HTTPS, TOKEN_HEADER: visitor.token, "HX-Request": "true"})
        async with asgi_client(root, session_cookie(app, owner)) as http:
            reply = await http.post(
                f"/dashboard/conversations/{conversation.id}/messages", data={"body": "Yes."},
                headers={**HTTPS, "X-CSRFToken": token, "HX-Request": "true"})
        return message, reply

    message, reply = run_async(both())
    assert message.status_code == 200 and 'id="compose"' in message.text
    assert reply.status_code == 200 and 'id="reply-form"' in reply.text
    check(message, True, "visitor message")
    check(reply, True, "agent reply")
    assert reply.headers["Cache-Control"] == "no-store"  # a signed-in answer


@pytest.mark.parametrize("trusted, scheme, forwarded_proto, expect_https", [
    (0, "http", None, False),
    (0, "https", None, True),                 # the server itself speaks TLS (the scope says)
    (0, "http", "https", False),              # a header from anyone is not believed
    (1, "http", "https", True),               # one trusted proxy says the client used https
    (1, "http", "https, http", False),        # the nearest proxy (the trusted one) said http
    (2, "http", "https, http", True),         # two trusted proxies: the farther one is asked
    (1, "https", "http", False),              # the proxy knows better than the hop to us
])
def test_https_is_known_the_way_flask_knows_it(app_config, trusted, scheme, forwarded_proto,
                                               expect_https):
    from tests.conftest import build_app

    flask_app = build_app({**app_config, "TRUST_PROXY": trusted})

    @flask_app.get("/what-flask-sees")
    def what_flask_sees():
        from flask import request

        return request.scheme

    headers = {"X-Forwarded-Proto": forwarded_proto} if forwarded_proto else {}

    async def ask():
        async with asgi_client(build(flask_app), base_url=f"{scheme}://localhost") as http:
            return await http.get("/what-flask-sees", headers=headers)

    response = run_async(ask())
    assert response.text == ("https" if expect_https else "http")
    assert ("Strict-Transport-Security" in response.headers) is expect_https
    check(response, expect_https, "probe")


def test_a_stream_that_fails_to_open_answers_500_with_the_headers(app):
    from app.chat.render import Renderer
    from app.chat.writer import Writer

    async def broken(request):
        raise RuntimeError("the stream could not open")

    root = SecurityHeaders(wire.ChatWrites(Starlette(), app, Writer(app), Renderer(app),
                                           {"/sse/visitor": broken}), 0)

    async def get():
        async with asgi_client(root) as http:
            return await http.get("/sse/visitor?ticket=x")

    response = run_async(get())
    assert response.status_code == 500
    assert "could not open" not in response.text  # no internals in the answer
    check(response, False, "failed stream")
