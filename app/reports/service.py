"""The reports' numbers: one row of figures per conversation (app/reports/models.py, kept up to
date from the chat's events at each view), those of the conversations started in the period
read in one statement, then counted and their medians taken per day, per site and per agent.

What the words mean (the page says so too):
- a conversation belongs to the local day (workspace time zone) it was started on;
- first response: from the visitor's first message to the first agent message stored after
  it, in the order the conversation shows them; the agent who wrote that message is the one
  the conversation counts for ("answered first by");
- resolution: from the start of the conversation to the last time an agent marked it
  resolved, for the conversations resolved now (one reopened by a new message is not).
Medians are taken over the conversations that have the time in question; an even count's
median is the mean of the two middle ones, rounded to the nearest second (halves up)."""

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property

from app.accounts.models import Membership, User, Workspace
from app.chat.labels import Label
from app.chat.models import ChatEvent, Conversation, EventCounter, Message
from app.db import database, dialect, sql, utcnow
from app.errors import RuleError
from app.reports.models import ConversationFact, ReportCursor
from app.timezones import zone
from app.widget.models import Site

PERIODS = (7, 30, 90)
DEFAULT_DAYS = 30
# ?by= of the CSV download: which table it is.
BREAKDOWNS = ("day", "site", "agent", "label")

FORMER, NO_REPLY = -1, -2  # the agent rows that are no current member (ids sort with them)

# Whole seconds since 1970 of a naive UTC column (app.db.epoch_seconds, for hand-written SQL).
EPOCH = {"sqlite": "CAST(strftime('%s', {}) AS INTEGER)",
         "postgres": "CAST(date_part('epoch', {}) AS BIGINT)"}

# The facts (app/reports/models.py) of some of a workspace's conversations started since a
# time, written or rewritten: `which` picks them, by a range of ids or by the events of a range
# of the workspace's event numbers. "First" goes by message id, the order the conversation is
# shown in: each lookup is then a short walk of the (conversation_id, id) index. Set by
# set_status, a status event's actor is the new status; a resolution from before that was
# recorded only as the last status event, which is what is read when no marked one exists.
UPSERT = """
WITH conv AS MATERIALIZED (
  SELECT c.id, c.workspace_id, c.site_id, c.created_at, c.status,
    (SELECT m.id FROM message m WHERE m.conversation_id = c.id AND m.sender = '{visitor}'
     ORDER BY m.id LIMIT 1) AS first_visitor
  FROM conversation c
  WHERE c.workspace_id = ? AND c.created_at >= ? AND {which}
), firsts AS MATERIALIZED (
  SELECT conv.*,
    (SELECT m.id FROM message m WHERE m.conversation_id = conv.id AND m.sender = '{agent}'
     AND m.id > conv.first_visitor ORDER BY m.id LIMIT 1) AS first_reply,
    CASE WHEN conv.status = '{resolved}' THEN COALESCE(
      (SELECT e.created_at FROM chat_event e WHERE e.conversation_id = conv.id
       AND e.kind = '{status}' AND e.actor = '{resolved}' ORDER BY e.seq DESC LIMIT 1),
      (SELECT e.created_at FROM chat_event e WHERE e.conversation_id = conv.id
       AND e.kind = '{status}' AND e.actor = '' ORDER BY e.seq DESC LIMIT 1)) END AS resolved_at
  FROM conv
), times AS (
  SELECT f.id, f.workspace_id, f.site_id, {started} AS started,
    {replied} - {asked} AS first_response, r.author_id, {resolved_at} - {started} AS resolution
  FROM firsts f
  LEFT JOIN message v ON v.id = f.first_visitor
  LEFT JOIN message r ON r.id = f.first_reply
)
INSERT INTO report_fact (conversation_id, workspace_id, site_id, started, first_response,
                         replier_id, resolution)
SELECT id, workspace_id, site_id, started,
  -- a clock a second behind in another process must not make a time negative
  CASE WHEN first_response < 0 THEN 0 ELSE first_response END, author_id,
  CASE WHEN resolution < 0 THEN 0 ELSE resolution END
FROM times WHERE TRUE
ON CONFLICT (conversation_id) DO UPDATE SET site_id = excluded.site_id,
  started = excluded.started, first_response = excluded.first_response,
  replier_id = excluded.replier_id, resolution = excluded.resolution
"""
WHICH = {
    "ids": "c.id > ? AND c.id <= ?",
    "events": "c.id IN (SELECT e.conversation_id FROM chat_event e WHERE e.workspace_id = ? "
              "AND e.seq > ? AND e.seq <= ?)",
}
# In the order they began: each day's facts are then one run of rows.
READ = ('SELECT "started", "site_id", "first_response", "replier_id", "resolution", '
        '"conversation_id" FROM "report_fact" WHERE "workspace_id" = ? AND "started" >= ? '
        'AND "started" < ? ORDER BY "started"')
# The labels on the period's conversations (app/chat/labels.py), read beside the facts.
LABELLED = ('SELECT cl."conversation_id", cl."label_id" FROM "conversation_label" cl '
            'JOIN "report_fact" f ON f."conversation_id" = cl."conversation_id" '
            'WHERE f."workspace_id" = ? AND f."started" >= ? AND f."started" < ?')

FIRST_BATCH = 500  # conversations per transaction when a workspace's facts are first made
EVENT_BATCH = 1000  # events per transaction afterwards: each is short, chat keeps answering
KEEP_DAYS = max(PERIODS) + 2  # facts are made for conversations this recent (time zones)


def upsert_sql(which: str) -> str:
    epoch = EPOCH[dialect()]
    return sql(UPSERT.format(
        which=WHICH[which], visitor=Message.VISITOR, agent=Message.AGENT,
        resolved=Conversation.RESOLVED, status=ChatEvent.STATUS,
        started=epoch.format("f.created_at"), replied=epoch.format("r.created_at"),
        asked=epoch.format("v.created_at"), resolved_at=epoch.format("f.resolved_at")))


# --- keeping the facts -------------------------------------------------------------------------


def bring_up_to_date(workspace_id: int, now: datetime) -> None:
    """Fold the workspace's chat events since the last view into its facts: every
    conversation an event touched gets its facts again. The first time, every conversation
    of the last KEEP_DAYS days gets them. A member who left since is nobody in them too, as
    in their messages (app.accounts.service.forget_member)."""
    since = str(now - timedelta(days=KEEP_DAYS))
    counter = EventCounter.get_or_none(EventCounter.workspace_id == workspace_id)
    last = counter.seq if counter else 0
    cursor = ReportCursor.get_or_none(ReportCursor.workspace == workspace_id)
    if cursor is None:
        _make_all(workspace_id, since)
        # Two first views at once both make them: the second finds the first one's cursor.
        ReportCursor.insert(workspace=workspace_id, seq=last).on_conflict_ignore().execute()
        cursor = ReportCursor.get(ReportCursor.workspace == workspace_id)
    seq = cursor.seq
    while seq < last:
        upto = min(last, seq + EVENT_BATCH)
        with database.atomic():
            database.execute_sql(upsert_sql("events"), (workspace_id, since, workspace_id, seq, upto))
            ReportCursor.update(seq=upto).where((ReportCursor.workspace == workspace_id)
                                                & (ReportCursor.seq < upto)).execute()
        seq = upto
    _forget_former_members(cursor)


def _make_all(workspace_id: int, since: str) -> None:
    after = 0
    while True:
        ids = [c.id for c in Conversation.select(Conversation.id).where(
            (Conversation.workspace == workspace_id) & (Conversation.created_at >= since)
            & (Conversation.id > after)).order_by(Conversation.id).limit(FIRST_BATCH)]
        if not ids:
            return
        with database.atomic():
            database.execute_sql(upsert_sql("ids"), (workspace_id, since, after, ids[-1]))
        after = ids[-1]


def _forget_former_members(cursor: ReportCursor) -> None:
    members = sorted(m.user_id for m in Membership.select(Membership.user)
                     .where(Membership.workspace == cursor.workspace_id))
    known = [int(i) for i in cursor.member_ids.split(",") if i]
    if members == known:
        return
    gone = sorted(set(known) - set(members))
    with database.atomic():
        if gone:
            ConversationFact.update(replier_id=None).where(
                (ConversationFact.workspace_id == cursor.workspace_id)
                & ConversationFact.replier_id.in_(gone)).execute()
        ReportCursor.update(member_ids=",".join(map(str, members))).where(
            ReportCursor.workspace == cursor.workspace_id).execute()


# --- the request's words -----------------------------------------------------------------------


def parse_days(raw: str | None) -> int:
    """The period asked for: 7, 30 or 90 days (30 when not given); anything else says no."""
    if raw is None:
        return DEFAULT_DAYS
    if raw.strip() in {str(p) for p in PERIODS}:
        return int(raw)
    raise RuleError("Choose a period of 7, 30 or 90 days.", field="days", status=400)


def parse_by(raw: str | None) -> str:
    if raw in BREAKDOWNS:
        return raw
    raise RuleError("Choose a table to download: by day, by site or by agent.", field="by",
                    status=400)


# --- the numbers -------------------------------------------------------------------------------


def median_seconds(values: list[int]) -> int | None:
    """The median of a row's own list, sorted in place (no copy of a hundred thousand)."""
    if not values:
        return None
    values.sort()
    mid = len(values) // 2
    middle = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return int(middle + 0.5)


@dataclass
class Row:
    """One line of a table: a day, a site or an agent, and its conversations' times (those
    it has: a conversation never answered has no first response)."""

    key: object
    label: str
    conversations: int = 0
    first_responses: list = field(default_factory=list)
    resolutions: list = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.first_responses)

    @property
    def resolved(self) -> int:
        return len(self.resolutions)

    @cached_property
    def median_first_response(self) -> int | None:
        return median_seconds(self.first_responses)

    @cached_property
    def median_resolution(self) -> int | None:
        return median_seconds(self.resolutions)


@dataclass
class Report:
    days: int
    zone: str
    first: date
    last: date
    total: Row
    by_day: list[Row]
    by_site: list[Row]
    by_agent: list[Row]
    by_label: list[Row]

    def rows(self, by: str) -> list[Row]:
        return {"day": self.by_day, "site": self.by_site, "agent": self.by_agent,
                "label": self.by_label}[by]

    @cached_property
    def satisfaction(self) -> dict:
        return satisfaction(self)


def local_days(tz_name: str, days: int, now: datetime) -> tuple[list[date], list[int]]:
    """The last `days` local days up to today, and the UTC epoch second each one starts at,
    plus the start of tomorrow (so a start time falls in day i when it is in [i, i + 1))."""
    tz = zone(tz_name)
    today = now.replace(tzinfo=timezone.utc).astimezone(tz).date()
    span = [today - timedelta(days=days - 1 - i) for i in range(days + 1)]
    starts = [int(datetime.combine(d, datetime.min.time(), tzinfo=tz).timestamp()) for d in span]
    return span[:-1], starts


# A busy workspace's month is a hundred thousand facts: counted in C (Counter), their times
# put in their group's list in one plain pass each (measured three times faster than sorting
# them by group and slicing).


def present(values) -> list:
    return [v for v in values if v is not None]


def split(keys, first_responses, resolutions) -> dict:
    """key -> (conversations, first responses, resolutions) of the facts with that key."""
    counts = Counter(keys)
    firsts, resolved = {k: [] for k in counts}, {k: [] for k in counts}
    for key, value in zip(keys, first_responses, strict=True):
        if value is not None:
            firsts[key].append(value)
    for key, value in zip(keys, resolutions, strict=True):
        if value is not None:
            resolved[key].append(value)
    return {k: (n, firsts[k], resolved[k]) for k, n in counts.items()}


def fill_rows(rows: dict, groups: dict) -> None:
    for key, (count, firsts, resolved) in groups.items():
        rows[key].conversations, rows[key].first_responses, rows[key].resolutions = (
            count, firsts, resolved)


def report(workspace_id: int, days: int, now: datetime | None = None) -> Report:
    now = now or utcnow()
    bring_up_to_date(workspace_id, now)
    tz_name = zone(Workspace.get_by_id(workspace_id).timezone).key
    span, starts = local_days(tz_name, days, now)
    facts = database.execute_sql(sql(READ), (workspace_id, starts[0], starts[-1])).fetchall()
    started, site_ids, firsts, repliers, resolved, conversation_ids = (
        zip(*facts, strict=True) if facts else ((),) * 6)

    total = Row("all", "All conversations", len(facts), present(firsts), present(resolved))
    cuts = [bisect.bisect_left(started, s) for s in starts]
    by_day = [Row(d, d.isoformat(), hi - lo, present(firsts[lo:hi]), present(resolved[lo:hi]))
              for d, lo, hi in zip(span, cuts, cuts[1:], strict=False)]
    sites = {s.id: Row(s.id, s.name) for s in Site.select(Site.id, Site.name)
             .where(Site.workspace == workspace_id).order_by(Site.name, Site.id)}
    fill_rows(sites, split(site_ids, firsts, resolved))
    agents = {u.id: Row(u.id, u.name) for u in User.select(User.id, User.name)
              .join(Membership).where(Membership.workspace == workspace_id)}
    others = {FORMER: Row(FORMER, "Former agent"), NO_REPLY: Row(NO_REPLY, "No reply yet")}
    # A fact with a first response and no (current) member's id was answered by a former one.
    keys = [NO_REPLY if f is None else r if r in agents else FORMER
            for r, f in zip(repliers, firsts, strict=True)]
    fill_rows(agents | others, split(keys, firsts, resolved))
    by_agent = sorted(agents.values(), key=lambda r: (-r.conversations, r.label.lower(), r.key))
    by_agent += [r for r in others.values() if r.conversations]
    by_label = label_rows(workspace_id, (workspace_id, starts[0], starts[-1]), conversation_ids,
                          firsts, resolved)
    return Report(days, tz_name, span[0], span[-1], total, by_day, list(sites.values()), by_agent,
                  by_label)


def label_rows(workspace_id: int, period: tuple, conversation_ids, firsts, resolved) -> list[Row]:
    """One row per label of the workspace (name order): a conversation with several labels
    counts for each of them, one with none for none."""
    labels = {lb.id: Row(lb.id, lb.name) for lb in Label.select(Label.id, Label.name)
              .where(Label.workspace == workspace_id).order_by(Label.name, Label.id)}
    on = {}
    for conversation_id, label_id in database.execute_sql(sql(LABELLED), period).fetchall():
        on.setdefault(conversation_id, []).append(label_id)
    keys, label_firsts, label_resolved = [], [], []
    for conversation_id, first, resolution in zip(conversation_ids, firsts, resolved, strict=True):
        for label_id in on.get(conversation_id, ()):
            keys.append(label_id)
            label_firsts.append(first)
            label_resolved.append(resolution)
    fill_rows(labels, split(keys, label_firsts, label_resolved))
    return list(labels.values())


# --- words and files ---------------------------------------------------------------------------


def duration(seconds: int | None) -> str:
    """A duration as people read it: "45 s", "4 min 10 s", "2 h 5 min", "3 d 4 h"; "—" for none."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {m} min" if m else f"{hours} h"
    d, h = divmod(hours, 24)
    return f"{d} d {h} h" if h else f"{d} d"


CSV_HEADER = ["conversations", "answered", "median_first_response_seconds", "resolved",
              "median_resolution_seconds"]


def csv_rows(rep: Report, by: str) -> list[list]:
    """The table `by` as CSV rows, header first: the same rows and numbers as the page's table,
    times in whole seconds ("" when there is none)."""
    head = {"day": f"day ({rep.zone})", "site": "site", "agent": "answered first by",
            "label": "label"}[by]
    out = [[head, *CSV_HEADER]]
    for row in rep.rows(by):
        out.append([safe_cell(row.label), row.conversations, row.answered,
                    _blank(row.median_first_response), row.resolved,
                    _blank(row.median_resolution)])
    return out


def safe_cell(text: str) -> str:
    """A name as a spreadsheet shows it, never as a formula it runs (a site or person named
    "=HYPERLINK(...)"): such a cell starts with an apostrophe, as OWASP advises."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _blank(value):
    return "" if value is None else value


# --- satisfaction (visitors' ratings, app/chat/ratings.py) -------------------------------------

# The ratings of the period's conversations, with the site and agent each counts for (the same
# facts as the tables above). By table name: the ratings' module holds the widget's route.
RATINGS = ('SELECT f."site_id", f."replier_id", f."first_response", r."rating" '
           'FROM "conversation_rating" r JOIN "report_fact" f ON f."conversation_id" = r."conversation_id" '
           'WHERE f."workspace_id" = ? AND f."started" >= ? AND f."started" < ?')


@dataclass
class Rated:
    """One line of the satisfaction tables: a site or an agent, and its ratings."""

    label: str
    good: int = 0
    okay: int = 0
    bad: int = 0

    @property
    def rated(self) -> int:
        return self.good + self.okay + self.bad

    @property
    def good_share(self) -> str:
        """The share of good ratings in whole percent (halves up), "—" when none was given."""
        return f"{(200 * self.good + self.rated) // (2 * self.rated)} %" if self.rated else "—"


def satisfaction(rep: Report) -> dict:
    """{"total": Rated, "site": [Rated], "agent": [Rated]}: the ratings of the conversations the
    report counts, per site and per agent in the report's own rows and order."""
    tz = zone(rep.zone)
    start, end = (int(datetime.combine(d, datetime.min.time(), tzinfo=tz).timestamp())
                  for d in (rep.first, rep.last + timedelta(days=1)))
    sites = {row.key: Rated(row.label) for row in rep.by_site}
    agents = {row.key: Rated(row.label) for row in rep.by_agent}
    agents.setdefault(FORMER, Rated("Former agent"))
    agents.setdefault(NO_REPLY, Rated("No reply yet"))
    total = Rated("All conversations")
    # The report names its sites, not its workspace: no site, no conversation to rate.
    workspace_id = Site.get_by_id(rep.by_site[0].key).workspace_id if rep.by_site else None
    found = database.execute_sql(sql(RATINGS), (workspace_id, start, end)).fetchall() if workspace_id else []
    for site_id, replier, first, rating in found:
        agent = NO_REPLY if first is None else replier if replier in agents else FORMER
        for row in (total, sites.get(site_id), agents[agent]):
            if row is not None and rating in ("good", "okay", "bad"):
                setattr(row, rating, getattr(row, rating) + 1)
    return {"total": total, "site": list(sites.values()),
            "agent": [row for key, row in agents.items()
                      if row.rated or key not in (FORMER, NO_REPLY)]}
