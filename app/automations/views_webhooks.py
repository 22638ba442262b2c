"""The inbound webhooks' blueprint: POST /hooks/<secret> starts the automation that owns it."""

import json
from urllib.parse import parse_qsl

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.automations import service
from app.errors import RuleError
from app.extensions import csrf, limiter

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
# Called by other services, never by a browser form: the secret in the URL is the credential.
csrf.exempt(bp)


def _answer(status: int, **body):
    return jsonify(body), status


def _body() -> bytes | None:
    """The raw body, or None when it passes the limit. Read as a stream whatever the framing
    (a stated length or chunked): a read may return fewer bytes than asked, so read until
    the body ends or one byte passes the limit."""
    limit = service.WEBHOOK_BODY_LIMIT
    if request.content_length is not None and request.content_length > limit:
        return None
    data = bytearray()
    try:
        while len(data) <= limit:
            chunk = request.stream.read(limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except RequestEntityTooLarge:  # past the app's MAX_CONTENT_LENGTH, should it be lower
        return None
    return None if len(data) > limit else bytes(data)


class BadBody(ValueError):
    pass


def _payload(raw: bytes) -> dict:
    """A JSON object or a URL-encoded form, as a dict; BadBody says what is wrong."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("The body is not UTF-8 text.") from None
    if request.mimetype == "application/json" or request.mimetype.endswith("+json"):
        try:
            data = json.loads(text)
        except ValueError:
            raise BadBody("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise BadBody("The JSON body must be an object ({…}).")
        return data
    if request.mimetype == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise BadBody("The form body cannot be read.") from None
        data: dict = {}
        for key, value in pairs:
            if key in data:  # a repeated name keeps every value
                data[key] = (data[key] if isinstance(data[key], list) else [data[key]]) + [value]
            else:
                data[key] = value
        return data
    raise BadBody("Send JSON (application/json) or a form (application/x-www-form-urlencoded).")


@bp.post("/<secret>")
@limiter.limit("120 per minute")
def inbound(secret):
    raw = _body()
    if raw is None:
        return _answer(413, error=f"The body passes {service.WEBHOOK_BODY_LIMIT // 1024} KB.")
    try:
        payload = _payload(raw)
    except BadBody as exc:
        return _answer(422, error=str(exc))
    try:
        run = service.inbound_webhook(secret, payload)
    except RuleError as exc:
        return _answer(exc.status, error=exc.message)
    if run is None:
        return _answer(404, error="No automation has this address.")
    return _answer(202, run=run.id)
