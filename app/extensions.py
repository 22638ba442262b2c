"""Flask extensions created once and bound to the app in the factory."""

from flask import request
from flask_limiter import Limiter

from app.csrf import Protect


def _client_ip() -> str:
    # With LUMNAR_TRUST_PROXY set, ProxyFix has already put the client's address here.
    return request.remote_addr or "unknown"


csrf = Protect()  # our own rule (app/csrf.py), shared with the chat writes
limiter = Limiter(key_func=_client_ip, default_limits=[])
