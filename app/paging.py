"""Numbers taken from a URL (page numbers, row ids): never big enough to break a query.

SQLite stores integers in 64 bits, and Python refuses to bind a larger one (OverflowError),
so an unchecked `?page=99999999999999999999` or `/conversations/99999999999999999999` used
to answer 500. Every route reads such numbers through this module instead."""

from flask import abort, request
from werkzeug.routing import IntegerConverter

# Further back than this, offset paging gets slow; filters and search are the way there.
MAX_PAGE = 10_000
LARGEST_ID = 2**63 - 1  # SQLite's largest INTEGER


def whole_number(raw) -> int | None:
    """`raw` (a string from a request) as a number a row id can be, 0 to LARGEST_ID; None for
    anything else. ASCII digits only: int() also reads "٣" and " 3 ", which no form or
    link of ours sends."""
    raw = raw if isinstance(raw, str) else ""
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(LARGEST_ID)):
        number = int(raw)
        return number if number <= LARGEST_ID else None
    return None


def _too_big(raw: str) -> bool:
    return raw.isascii() and raw.isdigit() and whole_number(raw) is None


def page_arg(name: str = "page") -> int:
    """The page asked for in the query string. Absent, or not a whole number ("abc", "0",
    "-1"): the first page, as before. A whole number past MAX_PAGE: 404."""
    raw = request.args.get(name, "")
    if _too_big(raw):
        abort(404)
    number = whole_number(raw)
    if number is None or number < 1:
        return 1
    if number > MAX_PAGE:
        abort(404)
    return number


def id_arg(name: str) -> int | None:
    """A row id from the query string: None when absent or not a whole number; 404 when it
    is a number no row can have."""
    raw = request.args.get(name, "")
    if _too_big(raw):
        abort(404)
    number = whole_number(raw)
    if number == 0:
        abort(404)
    return number


class RowIdConverter(IntegerConverter):
    """The `<int:...>` of every route: a number past SQLite's largest integer does not match
    the route (404) instead of reaching a query."""

    # Longer numbers do not even look like the route, so they are 404 whatever the method
    # (werkzeug answers 405 when only the value check fails and another method's route
    # matched the path).
    regex = r"\d{1,19}"

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", LARGEST_ID)
        super().__init__(map, *args, **kwargs)
