"""Answers for pages and htmx: the full page or the partial htmx asked for (design habit 6), a
failed post's errors beside its fields, and where to go after a successful post."""

from flask import make_response, redirect, render_template, request
from markupsafe import Markup

from app.errors import RuleError


def wants_fragment() -> bool:
    # A history restore needs the whole page, even though htmx sent the request.
    return bool(request.htmx) and not request.htmx.history_restore_request and not request.htmx.boosted


def render(page: str, fragment: str | None = None, /, status: int = 200, **context):
    """Render `page` for a normal request, or only `fragment` (which `page` includes) for htmx.

    The two template names are positional-only, so a template may use `page` as a variable."""
    template = fragment if (fragment and wants_fragment()) else page
    return make_response(render_template(template, **context), status)


def render_form_errors(page: str, fragment: str | None, /, *forms, error: RuleError | None = None,
                       **context):
    """The one answer to a post that failed: a form whose validation failed and/or a service's
    rule error, shown in `page` (or `fragment` for htmx) as render() does, with status 422, which
    htmx is configured to swap (or the error's own 4xx status, e.g. 429 or 409).

    The error's message goes beside the field it names, in the first of `forms` that has that
    field; a message for no field goes above the first form (its `form_errors`), or, with no
    form at all, to the template as `problem`. The forms themselves travel in `context` under
    the names their templates use."""
    status = 422
    if error is not None:
        status = error.status
        unplaced = []
        upgrade = getattr(error, "upgrade_url", None)
        for name, message in error.by_field().items():
            if upgrade:  # a plan's limit: the way past it, beside the message
                message = Markup('{} <a href="{}">See plans and upgrade</a>').format(message, upgrade)
            form = next((f for f in forms if name and name != "csrf_token" and name in f), None)
            if form is not None:
                form[name].errors = [*form[name].errors, message]
            elif forms:
                forms[0].form_errors.append(message)
            else:
                unplaced.append(message)
        if unplaced:
            context["problem"] = " ".join(unplaced)
    return render(page, fragment, status=status, **context)


def go(url: str):
    """Navigate after a successful post: 303 for a plain form, HX-Redirect for htmx."""
    if request.htmx:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)
