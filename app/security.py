"""Security defaults on every response, and friendly error pages (htmx-aware)."""

from flask import g, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

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


def apply_headers(h, secure: bool, signed_in: bool) -> None:
    """Our defaults onto a response's headers (Flask's, or Starlette's for the hot writes)."""
    # Pages may set their own policy (the chat widget's frame-ancestors lists the
    # customer's origins); only pages without one get ours and the old-browser frame ban.
    if "Content-Security-Policy" not in h:
        h["Content-Security-Policy"] = CSP
        h["X-Frame-Options"] = "DENY"
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "strict-origin-when-cross-origin"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    if secure:
        h["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if signed_in:
        h["Cache-Control"] = "no-store"  # signed-in pages never sit in a shared cache
    if hasattr(h, "add_vary_header"):  # Starlette's headers
        h.add_vary_header("HX-Request")
    else:  # werkzeug's
        h.add("Vary", "HX-Request")


def init_app(app):
    @app.after_request
    def headers(response):
        apply_headers(response.headers, request.is_secure, g.get("user") is not None)
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
