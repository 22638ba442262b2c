"""One CSRF rule for both apps: app/csrf.py makes and checks every token, with our own salt
and public APIs only, and the token a Flask page carries is the one the chat writes check."""

from pathlib import Path

from app.csrf import refusal
from tests.route_walk import session_cookie

ROOT = Path(__file__).resolve().parents[1]


def test_no_code_of_ours_uses_a_librarys_private_csrf_salt():
    for path in (ROOT / "app").rglob("*.py"):
        assert "wtf-csrf-token" not in path.read_text(), path


def test_the_token_a_page_carries_opens_with_the_shared_rule_and_no_other_session(app, auth):
    serializer = app.session_interface.get_signing_serializer(app)
    token = auth.csrf()
    data = serializer.loads(session_cookie(app, auth))
    kw = {"scheme": "http", "host": "localhost", "referrer": None, "strict": True}
    assert refusal(app.secret_key, data, token, **kw) is None
    assert refusal(app.secret_key, {**data, "csrf": "another-secret"}, token, **kw)
    assert refusal(app.secret_key, data, token + "x", **kw)
    assert refusal(app.secret_key, data, None, **kw)
    # On https the request must come from one of our pages.
    https = {**kw, "scheme": "https"}
    assert refusal(app.secret_key, data, token, **https)
    assert refusal(app.secret_key, data, token, **{**https, "referrer": "https://evil.example/"})
    assert refusal(app.secret_key, data, token,
                   **{**https, "referrer": "https://localhost/dashboard/inbox"}) is None
