"""Usage insight's rules: what is counted, who is never counted, and the counters themselves.

Counted: full page views of the dashboard and the public site under the route's endpoint
name (`chat.inbox`, never the URL, which holds ids and queries), and the feature events in
EVENTS, one number per UTC day. Nothing about the person or the device is kept, and nothing
is stored on the device. Not counted: anyone who objected in their settings, and every
member of a workspace whose processing is restricted.

Counts are added up in memory in each process and written every FLUSH_SECONDS by one
background thread, one upsert per (day, kind, name): a write per page view would put a
write transaction on every page (measured: ~25 µs alone on SQLite, but queued behind the
process's writer lock with every chat write; on PostgreSQL a round trip and a hot row whose
lock every concurrent page view of the same route waits for, p99 18 ms with 16 clients)."""

import atexit
import logging
import os
import threading
import time
from datetime import date, timedelta

from flask import current_app, g, has_app_context, has_request_context, request
from peewee import DatabaseError, fn

from app.db import connection, database, sql, utcnow
from app.insight.models import InsightCount, InsightObjection
from app.shortcache import cache_for

logger = logging.getLogger(__name__)

PAGE, EVENT = "page", "event"

# The feature events, in plain words for the staff page. A fixed list on purpose: a name
# made up at the call site could carry a customer's words or an id.
EVENTS = {
    "account.signed_up": "Accounts created",
    "site.created": "Sites added",
    "chat.conversation_started": "Conversations started by visitors",
    "chat.reply_sent": "Replies sent by members",
    "chat.saved_reply_used": "Saved replies used",
    "automation.created": "Automations set up",
    "automation.run": "Automation runs",
    "team.member_invited": "Members invited",
    "billing.checkout_started": "Plan checkouts started",
}

# Whose pages are counted: the dashboard's areas and the public site. Not the widget (it runs
# inside our customers' own sites, for their visitors), not the staff area, not the dev outbox.
PAGE_AREAS = frozenset({"public", "accounts", "policies", "contact", "dashboard", "chat",
                        "automations", "sites", "billing"})
NOT_PAGES = frozenset({"public.healthz"})

FLUSH_SECONDS = 5.0
ROWS_PER_UPSERT = 100  # 400 bound values: well under either engine's limit
KEEP_DAYS = 400  # a year and a bit, to compare a month with the same month a year before

UPSERT_HEAD = 'INSERT INTO "insight_count" ("day", "kind", "name", "count") VALUES '
UPSERT_TAIL = (' ON CONFLICT ("day", "kind", "name") DO UPDATE '
               'SET "count" = "insight_count"."count" + "excluded"."count"')


def upsert_statement(rows: int) -> str:
    return UPSERT_HEAD + ", ".join(["(?, ?, ?, ?)"] * rows) + UPSERT_TAIL


# --- who is counted ------------------------------------------------------------------------


def has_objected(user_id: int) -> bool:
    """Whether the person objected; asked once per few seconds per person and process
    (SHORT_CACHE_SECONDS), dropped at once here when they change their mind."""

    def ask() -> bool:
        return InsightObjection.select().where(InsightObjection.user == user_id).exists()

    if not has_app_context():
        return ask()
    return cache_for(current_app, "insight_objections").get(user_id, ask, lambda _value: user_id)


def counted(req) -> bool:
    """Whether what happens in request `req` may be counted: not for a person who objected, and
    not for a member of a restricted workspace. A visitor who is not logged in is counted:
    nothing identifies them, and nothing about them is kept. Who `req` comes from is read
    from g, where the sessions put it for this very request."""
    membership = g.get("membership")
    # The restriction flag arrives with the data-rights work; until then no workspace has it
    # (the tests set the attribute on the loaded workspace to prove it is honoured).
    if membership is not None and getattr(membership.workspace, "processing_restricted", False):
        return False
    user = g.get("user")
    return user is None or not has_objected(user.id)


def is_page_view(req, response) -> bool:
    """A whole page of the dashboard or the public site, answered in full: not a redirect or
    an error, not a static file or a download, not a stream, and not an htmx fragment (those
    are parts of a page already counted, polled or swapped in, and would count its clicks)."""
    if req.method != "GET" or response.status_code != 200 or response.mimetype != "text/html":
        return False
    endpoint = req.endpoint
    if not endpoint or endpoint in NOT_PAGES or endpoint.partition(".")[0] not in PAGE_AREAS:
        return False
    htmx = req.headers.get("HX-Request") == "true"
    whole_page = (req.headers.get("HX-History-Restore-Request") == "true"
                  or req.headers.get("HX-Boosted") == "true")
    return not htmx or whole_page


def count_page(req, response) -> None:
    if is_page_view(req, response) and counted(req):
        tally.add(PAGE, req.endpoint)


def count(event: str, workspace=None, user_id: int | None = None) -> None:
    """Count one feature event (a name from EVENTS). In a Flask request, not when the person
    objected or their workspace is restricted. Outside one (a task, the chat's own routes in
    app/chat/wire.py), the caller names who acted: not when `user_id` objected or `workspace`
    (the loaded Workspace) is restricted."""
    if event not in EVENTS:
        raise ValueError(f"{event!r} is not one of usage insight's events (app/insight/service.py)")
    if workspace is not None and getattr(workspace, "processing_restricted", False):
        return
    if user_id is not None and has_objected(user_id):
        return
    if has_request_context() and not counted(request):
        return
    tally.add(EVENT, event)


# --- the objection -----------------------------------------------------------------------------


def object_to_counting(user_id: int) -> None:
    InsightObjection.insert(user=user_id).on_conflict_ignore().execute()
    cache_for(current_app, "insight_objections").drop(user_id)


def withdraw_objection(user_id: int) -> None:
    InsightObjection.delete().where(InsightObjection.user == user_id).execute()
    cache_for(current_app, "insight_objections").drop(user_id)


# --- the counters in memory, and their flush ---------------------------------------------------


class Tally:
    """This process's counts since the last flush, for the database they belong to. The
    thread that writes them starts with the first count in a process (a forked child starts
    its own, and does not inherit its parent's counts)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._engine = None
        self._pid = None

    def add(self, kind: str, name: str) -> None:
        key = (utcnow().date().isoformat(), kind, name)
        engine = database.obj
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._counts = os.getpid(), {}
                threading.Thread(target=flush_every, args=(FLUSH_SECONDS,),
                                 name="insight-flush", daemon=True).start()
            if engine is not self._engine:
                # Another app's database in this process (the tests build one per test): the
                # counts made for the previous one are not this one's.
                self._engine, self._counts = engine, {}
            self._counts[key] = self._counts.get(key, 0) + 1

    def take(self):
        with self._lock:
            counts, self._counts = self._counts, {}
            return self._engine, counts

    def give_back(self, engine, counts: dict) -> None:
        with self._lock:
            if engine is self._engine:
                for key, n in counts.items():
                    self._counts[key] = self._counts.get(key, 0) + n


tally = Tally()
_flushing = threading.Lock()  # one flush at a time: a flush that returns has written all before it


def flush() -> int:
    """Write this process's counts; returns how many counters were written. A database that
    cannot be written now gets them back for the next flush."""
    with _flushing:
        return _write(*tally.take())


def _write(engine, counts: dict) -> int:
    if not counts or engine is not database.obj:
        return 0
    rows = sorted(counts.items())
    try:
        with connection(), database.atomic():
            for start in range(0, len(rows), ROWS_PER_UPSERT):
                chunk = rows[start:start + ROWS_PER_UPSERT]
                params = [value for (day, kind, name), n in chunk for value in (day, kind, name, n)]
                database.execute_sql(sql(upsert_statement(len(chunk))), params)
    except DatabaseError as exc:
        tally.give_back(engine, counts)
        logger.warning("usage insight could not write its counts (kept for the next try): %s", exc)
        return 0
    return len(rows)


def flush_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        try:
            flush()
        except Exception:  # the thread must outlive any one failure
            logger.exception("usage insight's flush failed")


def flush_at_exit() -> None:
    try:
        flush()
    except Exception:
        logger.exception("usage insight's last flush failed")


atexit.register(flush_at_exit)


def purge_old(today: date | None = None) -> int:
    cutoff = (today or utcnow().date()) - timedelta(days=KEEP_DAYS)
    return InsightCount.delete().where(InsightCount.day < cutoff).execute()


# --- what staff see ----------------------------------------------------------------------------


def per_day(kind: str, days: int = 30, today: date | None = None) -> list[tuple[date, int, int]]:
    """(day, count, 0) for each of the last `days` UTC days, oldest first, zeros included: the
    rows the automations' bar chart draws (app/automations/screens.chart)."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    totals = {first + timedelta(days=i): 0 for i in range(days)}
    query = (InsightCount.select(InsightCount.day, fn.SUM(InsightCount.count))
             .where((InsightCount.kind == kind) & (InsightCount.day >= first))
             .group_by(InsightCount.day))
    for day, n in query.tuples():
        if day in totals:
            totals[day] += int(n)
    return [(day, n, 0) for day, n in totals.items()]


def top(kind: str, days: int = 30, limit: int = 20, today: date | None = None) -> list[tuple[str, int]]:
    """The most counted names of `kind` over the last `days` days, most first."""
    first = (today or utcnow().date()) - timedelta(days=days - 1)
    total = fn.SUM(InsightCount.count)
    query = (InsightCount.select(InsightCount.name, total)
             .where((InsightCount.kind == kind) & (InsightCount.day >= first))
             .group_by(InsightCount.name)
             .order_by(total.desc(), InsightCount.name)
             .limit(limit))
    return [(name, int(n)) for name, n in query.tuples()]



def objected_now() -> bool:
    """For the settings section: whether the logged-in person objected."""
    return has_objected(g.user.id)
