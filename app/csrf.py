"""The one CSRF rule, used by the Flask pages (a before_request check and every form's hidden
field) and by the chat writes served at the ASGI root (app/chat/wire.py).

A session holds a random secret; a page carries that secret signed with the app's key under
our own salt. An unsafe request must carry a token that opens to its own session's secret,
and on https a Referer of the same origin (scheme and host as app.security.forwarded judges
them, the rule Flask's ProxyFix applies). Written here, with public itsdangerous and WTForms
APIs only, so that both apps check exactly the same thing.
"""

import hmac
import secrets
from urllib.parse import urlsplit

from flask import current_app, g, request, session
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup
from werkzeug.exceptions import BadRequest
from wtforms.csrf.core import CSRF
from wtforms.validators import ValidationError

from app.shortcache import ShortCache

SALT = "lumnar-csrf"
SESSION_KEY = "csrf"  # the session's raw secret
FIELD = "csrf_token"  # the form field
HEADERS = ("X-CSRFToken", "X-CSRF-Token")  # htmx sends the page's token in the first
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CSRFError(BadRequest):
    """Answered with the "Form expired" page (app/security.py)."""


def _signer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def sign(secret_key: str, raw: str) -> str:
    return _signer(secret_key).dumps(raw)


def refusal(secret_key: str, data: dict, token: str | None, *, scheme: str, host: str,
            referrer: str | None, strict: bool, max_age: int | None = None) -> str | None:
    """Why an unsafe request is refused, or None when its token is its session's own.
    `data` is the decoded session; scheme and host are the request's as the proxy rule sees
    them; `strict` asks for a same-origin Referer on https."""
    raw = data.get(SESSION_KEY)
    if not raw or not token:
        return "The form's security token is missing."
    signed = _opened.get((secret_key, token, max_age), lambda: _open(secret_key, token, max_age))
    if signed is None:
        return "The form's security token is not valid."
    if not isinstance(signed, str) or not hmac.compare_digest(raw, signed):
        return "The form's security token does not match this session."
    if strict and scheme == "https":
        parts = urlsplit(referrer or "")
        if (parts.scheme, parts.netloc) != ("https", host):
            return "The request did not come from one of our pages."
    return None


# Tokens whose signature held, for a few seconds: an agent's page sends the same token with
# every post, and its check cost as much as the reply's writes (profiled). A token that
# fails is checked again each time.
_opened = ShortCache()


def _open(secret_key: str, token: str, max_age: int | None):
    try:
        return _signer(secret_key).loads(token, max_age=max_age)
    except BadData:
        return None


def token_from(form, headers) -> str | None:
    return form.get(FIELD) or next((headers.get(h) for h in HEADERS if headers.get(h)), None)


def hidden_input(token: str) -> Markup:
    return Markup('<input id="{0}" name="{0}" type="hidden" value="{1}">').format(FIELD, token)


# --- the Flask side -----------------------------------------------------------------------------


def token() -> str:
    """This session's token (its secret made on first use), for pages and forms."""
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_urlsafe(32)
    return sign(current_app.secret_key, session[SESSION_KEY])


class Protect:
    """Checks every unsafe Flask request but those of exempt blueprints (reviewed list in
    tests/test_csrf_everywhere.py)."""

    def __init__(self):
        self.exempt_blueprints = set()

    def exempt(self, blueprint):
        self.exempt_blueprints.add(blueprint.name)
        return blueprint

    def init_app(self, app):
        app.jinja_env.globals["csrf_token"] = token
        app.before_request(self.check)

    def check(self):
        if request.method not in UNSAFE or request.blueprint in self.exempt_blueprints:
            return
        if request.endpoint is None:
            return  # no such route: Flask answers 404/405 without acting
        why = refusal(current_app.secret_key, session, token_from(request.form, request.headers),
                      scheme=request.scheme, host=request.host, referrer=request.referrer,
                      strict=current_app.config.get("WTF_CSRF_SSL_STRICT", True),
                      max_age=current_app.config.get("WTF_CSRF_TIME_LIMIT"))
        if why:
            raise CSRFError(why)
        g.csrf_checked = True


class SessionCSRF(CSRF):
    """WTForms' public CSRF hook: forms render this session's token as their hidden field;
    the check itself is Protect.check, made before any view runs."""

    def generate_csrf_token(self, csrf_token_field):
        return token()

    def validate_csrf_token(self, form, field):
        if g.get("csrf_checked"):
            return  # checked already, header or field, before the view ran
        if refusal(current_app.secret_key, session, field.data, scheme="http", host="",
                   referrer=None, strict=False):
            raise ValidationError("The form's security token is not valid.")


class TokenForm(FlaskForm):
    """Every form of ours: FlaskForm with the token above."""

    class Meta:
        csrf_class = SessionCSRF
