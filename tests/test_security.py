"""Security defaults: CSRF, response headers, friendly error pages (htmx-aware), escaping and
per-IP rate limits."""

import pytest

from app.accounts.models import User
from app.asgi import build
from app.db import connection
from tests.chat_fixtures import run_async
from tests.conftest import PASSWORD, Client, db_state, log_in, make_user
from tests.route_walk import asgi_client, session_cookie

CSRF_MESSAGE = "This form was missing its security token"


def name_of(email="owner@example.com") -> str:
    with connection():
        return User.by_email(email).name


# --- CSRF ----------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_and_changes_nothing(auth):
    before = db_state()
    response = auth.raw.post("/dashboard/settings/name", data={"name": "No Token"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Form expired" in page and CSRF_MESSAGE in page
    assert db_state() == before


def test_signup_without_csrf_token_creates_nothing(client, smtp):
    before = db_state()
    response = client.raw.post("/signup", data={
        "name": "Sam", "email": "sam@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert CSRF_MESSAGE in response.get_data(as_text=True)
    assert db_state() == before
    assert smtp.messages == []


def test_post_with_a_wrong_csrf_token_is_refused(app, auth):
    before = db_state()
    garbage = auth.raw.post("/dashboard/settings/name",
                            data={"name": "Wrong Token", "csrf_token": "not-a-token"})
    # A real token, but from another browser's session.
    foreign = Client(app.test_client()).csrf()
    borrowed = auth.raw.post("/dashboard/settings/name",
                             data={"name": "Wrong Token", "csrf_token": foreign})
    for response in (garbage, borrowed):
        assert response.status_code == 400
        assert CSRF_MESSAGE in response.get_data(as_text=True)
    assert db_state() == before


def test_htmx_request_with_the_token_in_the_x_csrftoken_header_works(auth):
    response = auth.raw.post("/dashboard/settings/name", data={"name": "Via Htmx"},
                             headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and 'id="profile"' in fragment  # only the swapped part
    assert name_of() == "Via Htmx"


def test_htmx_request_without_token_is_refused_into_the_flash_area(auth):
    before = db_state()
    response = auth.raw.post("/dashboard/settings/name", data={"name": "No Token"},
                             headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert response.headers["HX-Retarget"] == "#flash"
    assert CSRF_MESSAGE in response.get_data(as_text=True)
    assert db_state() == before


# --- headers (added at the ASGI root; every route: tests/test_headers_everywhere.py) ---------

ANONYMOUS_PAGES = ["/", "/privacy", "/login", "/signup", "/password/forgot", "/no-such-page"]
SIGNED_IN_PAGES = ["/dashboard/settings", "/dashboard/team"]


def through_root(app, paths, cookie=None, base_url="http://localhost", headers=None):
    """GET each path through the ASGI app the web process serves (app/asgi.py)."""
    async def get_all():
        async with asgi_client(build(app), cookie, base_url=base_url) as http:
            return [await http.get(path, headers=headers or {}) for path in paths]

    return run_async(get_all())


def assert_security_headers(response):
    h = response.headers
    csp = h["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp and h["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in h["Permissions-Policy"] and "microphone=()" in h["Permissions-Policy"]


def test_every_html_response_carries_the_security_headers(app, client, user):
    responses = through_root(app, ANONYMOUS_PAGES)
    log_in(client)
    signed_in = through_root(app, SIGNED_IN_PAGES, session_cookie(app, client))
    for response in responses + signed_in:
        assert response.headers["content-type"].startswith("text/html"), response.url
        assert_security_headers(response)
        assert "Strict-Transport-Security" not in response.headers  # plain http here
    # Signed-in pages are never kept in a shared cache.
    assert all(r.status_code == 200 and r.headers["Cache-Control"] == "no-store" for r in signed_in)


def test_htmx_fragments_carry_the_security_headers_too(app, auth):
    [response] = through_root(app, ["/dashboard/settings"], session_cookie(app, auth),
                              headers={"HX-Request": "true"})
    assert response.status_code == 200 and "<html" not in response.text
    assert_security_headers(response)
    assert "HX-Request" in response.headers["Vary"]  # caches keep the fragment and the page apart


def test_hsts_is_sent_only_over_https(app):
    [secure] = through_root(app, ["/"], base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert_security_headers(secure)
    [plain] = through_root(app, ["/"])
    assert "Strict-Transport-Security" not in plain.headers


# --- error pages ---------------------------------------------------------------------------


def test_body_over_the_size_limit_gets_a_friendly_413_page(app, client, smtp):
    before = db_state()
    too_big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post_form("/signup", {"name": too_big, "email": "big@example.com",
                                            "password": PASSWORD})
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "Too large" in page and "larger than we accept" in page
    assert db_state() == before
    assert smtp.messages == []


def test_unknown_address_gets_a_friendly_404_page(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "<html" in page and "Not found" in page and "There is nothing at this address." in page


def test_wrong_method_gets_a_405_page_with_allow_header(client):
    response = client.get("/logout")
    assert response.status_code == 405
    assert "Method not allowed" in response.get_data(as_text=True)
    assert "POST" in response.headers["Allow"]


def test_htmx_error_responses_are_retargeted_to_the_flash_area(auth):
    response = auth.get("/no-such-page", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert response.headers["HX-Retarget"] == "#flash"
    assert response.headers["HX-Reswap"] == "innerHTML"
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and "There is nothing at this address." in fragment


def test_htmx_request_after_session_end_is_told_to_navigate_to_login(client):
    response = client.get("/dashboard/settings", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/dashboard/settings"


# --- escaping --------------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"


def test_user_text_is_escaped_in_the_team_page(app, client):
    make_user(app, email="mallory@example.com", name=SCRIPT)
    log_in(client, "mallory@example.com")
    page = client.get("/dashboard/team").get_data(as_text=True)
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Team of &lt;script&gt;alert(1)&lt;/script&gt;&#39;s workspace" in page


# --- rate limits -----------------------------------------------------------------------------


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_signup_is_limited_to_ten_an_hour_per_address(client, smtp):
    for n in range(10):
        response = client.post_form("/signup", {
            "name": f"Person {n}", "email": f"p{n}@example.com", "password": PASSWORD})
        assert response.status_code == 200, n
    before = db_state()
    response = client.post_form("/signup", {
        "name": "One Too Many", "email": "p10@example.com", "password": PASSWORD})
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    assert "<html" in page and "Slow down" in page and "Too many attempts" in page
    assert int(response.headers["Retry-After"]) > 0
    assert db_state() == before
