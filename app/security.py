"""Security defaults on every response (one ASGI layer), and friendly error pages (htmx-aware)."""

from flask import g, request
from starlette.datastructures import MutableHeaders
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix

from app.csrf import CSRFError
from app.rendering import render

# No 'unsafe-inline' and no 'unsafe-eval': htmx is configured (base.html) to need neither.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

MESSAGES = {
    400: ("Bad request", "We could not understand that request."),
    401: ("Please log in", "You need to log in to see this."),
    403: ("Not allowed", "Your account is not allowed to do that."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than we accept. Try a smaller file or text."),
    429: ("Slow down", "Too many attempts in a short time. Wait a few minutes, then try again."),
    500: ("Something went wrong", "An error on our side stopped this request. Nothing you did "
          "caused it, and we have been told."),
}


# The defaults every response gets unless it set its own (app/asgi.py adds them at the root).
DEFAULT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def behind_proxies(wsgi_app, hops: int):
    """How far X-Forwarded-* headers are believed (LUMNAR_TRUST_PROXY hops): the one rule
    Flask runs under and the ASGI root asks through `forwarded`."""
    return ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)


def forwarded(scope, hops: int) -> tuple[str, str]:
    """(scheme, host) of an ASGI request exactly as Flask sees them: the scope put into a
    WSGI environ the way a2wsgi does, then through the same ProxyFix Flask is wrapped in."""
    environ = {"wsgi.url_scheme": scope.get("scheme", "http")}
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
    for name, value in scope.get("headers", []):
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        value = value.decode("latin-1")
        environ[key] = environ[key] + "," + value if key in environ else value
    if hops:
        def seen(env, start_response):
            return env

        environ = behind_proxies(seen, hops)(environ, None)
    return environ["wsgi.url_scheme"], environ.get("HTTP_HOST", "")


def apply_headers(h, secure: bool) -> None:
    """Our defaults onto Starlette headers, each only where the response has not set it."""
    # Pages may set their own policy (the chat widget's frame-ancestors lists the
    # customer's origins); only pages without one get ours and the old-browser frame ban.
    if "Content-Security-Policy" not in h:
        h["Content-Security-Policy"] = CSP
        h.setdefault("X-Frame-Options", "DENY")
    for name, value in DEFAULT_HEADERS.items():
        h.setdefault(name, value)
    if secure:
        h.setdefault("Strict-Transport-Security", HSTS)
    # Caches keep an htmx fragment and the full page of one URL apart.
    if "hx-request" not in h.get("Vary", "").lower():
        h.add_vary_header("HX-Request")


class SecurityHeaders:
    """The one header layer: a pure ASGI middleware around the whole Starlette root, so that
    Flask's pages, the streams, the hot writes and every error answer of each get the same
    defaults. Pure ASGI (not BaseHTTPMiddleware) so that streams are passed on as they are
    sent, never buffered."""

    def __init__(self, app, trusted_hops: int = 0):
        self.app = app
        self.trusted_hops = trusted_hops

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        secure = forwarded(scope, self.trusted_hops)[0] in ("https", "wss")  # Flask's is_secure

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])  # optional in ASGI
                apply_headers(MutableHeaders(scope=message), secure)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def init_app(app):
    @app.after_request
    def no_store_when_signed_in(response):
        # The other defaults come from the ASGI root (SecurityHeaders). This one stays here:
        # only Flask has opened the session and knows it is valid, and it overrides a view's
        # own caching (a signed-in page is never kept in a shared cache).
        if g.get("user") is not None:
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_page(
            400,
            "Form expired",
            "This form was missing its security token or it no longer matches your session "
            "(for example after you logged out in another tab). Reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc):
        code = exc.code or 500
        title, text = MESSAGES.get(code, (exc.name, exc.description))
        response = error_page(code, title, text)
        if code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(InternalServerError)
    def server_error(exc):
        return error_page(500, *MESSAGES[500])


def error_page(code, title, text):
    response = render("errors/page.html", "errors/_error.html", code=code, title=title, text=text)
    response.status_code = code
    if request.htmx:
        # Show the message where the user is looking rather than inside some small target.
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response
