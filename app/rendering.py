"""Answers for pages and htmx: one helper decides between the full page and the partial htmx asked
for (design habit 6), one navigates after a successful post."""

from flask import make_response, redirect, render_template, request


def wants_fragment() -> bool:
    # A history restore needs the whole page, even though htmx sent the request.
    return bool(request.htmx) and not request.htmx.history_restore_request and not request.htmx.boosted


def render(page: str, fragment: str | None = None, /, status: int = 200, **context):
    """Render `page` for a normal request, or only `fragment` (which `page` includes) for htmx.

    The two template names are positional-only, so a template may use `page` as a variable."""
    template = fragment if (fragment and wants_fragment()) else page
    return make_response(render_template(template, **context), status)


def render_form_errors(page: str, fragment: str, /, **context):
    """A form with errors beside its fields: status 422, which htmx is configured to swap."""
    return render(page, fragment, status=422, **context)


def go(url: str):
    """Navigate after a successful post: 303 for a plain form, HX-Redirect for htmx."""
    if request.htmx:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)
