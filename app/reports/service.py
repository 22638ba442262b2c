"""The reports' numbers: one row of figures per conversation (app/reports/models.py, kept up to
date from the chat's events at each view), summed up per local day and kept between views
(see "each local day's figures" below), then the period's days put together per site, agent
and label.

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
import functools
import threading
import weakref
from array import array
from collections import OrderedDict
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
# Cut, not rounded, on both: PostgreSQL's CAST rounds a fraction, SQLite's '%s' drops it.
EPOCH = {"sqlite": "CAST(strftime('%s', {}) AS INTEGER)",
         "postgres": "CAST(floor(date_part('epoch', {})) AS BIGINT)"}

# The facts (app/reports/models.py) of some of a workspace's conversations started since a
# time, written or rewritten with the write's stamp (the last parameter): `which` picks them,
# by a range of ids or by the events of a range of the workspace's event numbers. "First" goes by message id, the order the conversation is
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
                         replier_id, resolution, stamp)
SELECT id, workspace_id, site_id, started,
  -- a clock a second behind in another process must not make a time negative
  CASE WHEN first_response < 0 THEN 0 ELSE first_response END, author_id,
  CASE WHEN resolution < 0 THEN 0 ELSE resolution END, CAST(? AS INTEGER)
FROM times WHERE TRUE
ON CONFLICT (conversation_id) DO UPDATE SET site_id = excluded.site_id,
  started = excluded.started, first_response = excluded.first_response,
  replier_id = excluded.replier_id, resolution = excluded.resolution, stamp = excluded.stamp
"""
WHICH = {
    "ids": "c.id > ? AND c.id <= ?",
    "events": "c.id IN (SELECT e.conversation_id FROM chat_event e WHERE e.workspace_id = ? "
              "AND e.seq > ? AND e.seq <= ?)",
}
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

MAKING = -1  # a cursor's seq while the workspace's facts are first being made


def bring_up_to_date(workspace_id: int, now: datetime) -> None:
    """Fold the workspace's chat events since the last view into its facts: every
    conversation an event touched gets its facts again. The first time, every conversation
    of the last KEEP_DAYS days gets them. A member who left since is nobody in them too, as
    in their messages (app.accounts.service.forget_member). Each write takes a new stamp."""
    since = str(now - timedelta(days=KEEP_DAYS))
    counter = EventCounter.get_or_none(EventCounter.workspace_id == workspace_id)
    last = counter.seq if counter else 0
    cursor = ReportCursor.get_or_none(ReportCursor.workspace == workspace_id)
    if cursor is None or cursor.seq == MAKING:
        # The cursor comes first, so that the first facts take their stamps from it like every
        # later write; until they are all made it says so, and a view that stopped half-way
        # leaves the next one to make them again.
        ReportCursor.insert(workspace=workspace_id, seq=MAKING).on_conflict_ignore().execute()
        _make_all(workspace_id, since)
        # Two first views at once both make them: the first to end moves the cursor on.
        ReportCursor.update(seq=last).where((ReportCursor.workspace == workspace_id)
                                            & (ReportCursor.seq == MAKING)).execute()
        cursor = ReportCursor.get(ReportCursor.workspace == workspace_id)
    seq = cursor.seq
    while seq < last:
        upto = min(last, seq + EVENT_BATCH)
        with database.atomic():
            stamp = new_stamp(workspace_id)
            database.execute_sql(upsert_sql("events"),
                                 (workspace_id, since, workspace_id, seq, upto, stamp))
            ReportCursor.update(seq=upto).where((ReportCursor.workspace == workspace_id)
                                                & (ReportCursor.seq < upto)).execute()
        seq = upto
    _forget_former_members(cursor)


def new_stamp(workspace_id: int) -> int:
    """The stamp of a write to the workspace's facts, taken inside its transaction. The
    cursor's row stays locked until that transaction ends (PostgreSQL; SQLite has one writer
    at a time), so a write that takes a stamp after another one sees it committed: a view
    that has seen some stamp has seen every write with a smaller one."""
    (stamp,) = database.execute_sql(sql(NEW_STAMP), (workspace_id,)).fetchone()
    return stamp


# One statement, as the chat's event counter (app/chat/events.py NEXT) takes its numbers.
NEW_STAMP = ('UPDATE "report_cursor" SET "stamp" = "stamp" + 1 WHERE "workspace_id" = ? '
             'RETURNING "stamp"')


def _make_all(workspace_id: int, since: str) -> None:
    after = 0
    while True:
        ids = [c.id for c in Conversation.select(Conversation.id).where(
            (Conversation.workspace == workspace_id) & (Conversation.created_at >= since)
            & (Conversation.id > after)).order_by(Conversation.id).limit(FIRST_BATCH)]
        if not ids:
            return
        with database.atomic():
            stamp = new_stamp(workspace_id)
            database.execute_sql(upsert_sql("ids"), (workspace_id, since, after, ids[-1], stamp))
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
            ConversationFact.update(replier_id=None, stamp=new_stamp(cursor.workspace_id)).where(
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


def median_seconds(runs) -> int | None:
    """The median of the values of some sorted runs (a row's times, one run per day), without
    putting them together: an even count's median is the mean of the two middle ones, rounded
    to the nearest second (halves up)."""
    runs = [run for run in runs if len(run)]
    n = sum(map(len, runs))
    if not n:
        return None
    mid = n // 2
    if n % 2:
        return nth(runs, mid)
    low = nth(runs, mid - 1)
    if sum(bisect.bisect_right(run, low) for run in runs) > mid:
        high = low  # the two middle values are equal
    else:
        high = min(run[i] for run in runs if (i := bisect.bisect_right(run, low)) < len(run))
    return int((low + high) / 2 + 0.5)


def nth(runs, k: int) -> int:
    """The k-th smallest (from 0) of the values of sorted runs of whole seconds: the smallest
    value with more than k values at or below it, found by halving the range of values, each
    step a binary search in each run. For a month of 3,000 times a day: 0.2 ms a median, where
    putting the 90,000 together and sorting them (Timsort merging the runs) took 7 ms."""
    if len(runs) == 1:
        return runs[0][k]
    lo, hi = min(run[0] for run in runs), max(run[-1] for run in runs)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(bisect.bisect_right(run, mid) for run in runs) > k:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class Row:
    """One line of a table: a day, a site, an agent or a label, and its conversations' times
    (those it has: a conversation never answered has no first response), as sorted runs, one
    per day it has any."""

    key: object
    label: str
    conversations: int = 0
    first_responses: list = field(default_factory=list)
    resolutions: list = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(map(len, self.first_responses))

    @property
    def resolved(self) -> int:
        return sum(map(len, self.resolutions))

    @cached_property
    def median_first_response(self) -> int | None:
        return median_seconds(self.first_responses)

    @cached_property
    def median_resolution(self) -> int | None:
        return median_seconds(self.resolutions)

    def take(self, group: "Group") -> None:
        """Add a day's group of conversations to the row."""
        self.conversations += group.count
        if group.firsts:
            self.first_responses.append(group.firsts)
        if group.resolutions:
            self.resolutions.append(group.resolutions)


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


# --- each local day's figures, kept between views ----------------------------------------------
#
# A busy workspace's month is a hundred thousand facts, and reading and sorting them all at
# every view took most of half a second. Past days hardly ever change, so each process keeps
# every day's figures as it last saw them (a Day), and each view asks, for every day of the
# period, how many facts it has and their highest stamp (ReportCursor.stamp). A day with the
# same answer is as it was: any write since would have raised its stamp, any deletion lowered
# its count. Otherwise the day gets the facts written since (those with a higher stamp) in
# place of their old figures; when the day then still does not have as many facts as the
# database says, some of those kept are gone (retention, a deletion: facts cascade), and the
# day is read again whole. So a late reply to a conversation of last week costs the view one
# row, not the week, and today, which changes all the time, only its new conversations.

NONE = -1  # a day's columns hold no None: times and ids are never negative
COLUMNS = "q"  # array type of a day's columns: 8-byte integers, whatever an id or time grows to


class Group:
    """One day's share of a row: its conversations, and their first responses and resolutions
    (those they have), each sorted."""

    __slots__ = ("count", "firsts", "resolutions")

    def __init__(self, count=0, firsts=None, resolutions=None):
        self.count = count
        self.firsts = array(COLUMNS) if firsts is None else firsts
        self.resolutions = array(COLUMNS) if resolutions is None else resolutions

    def copy(self) -> "Group":
        return Group(self.count, self.firsts[:], self.resolutions[:])

    def add(self, first: int, resolution: int) -> None:
        self.count += 1
        if first != NONE:
            bisect.insort(self.firsts, first)
        if resolution != NONE:
            bisect.insort(self.resolutions, resolution)

    def remove(self, first: int, resolution: int) -> None:
        self.count -= 1
        if first != NONE:
            del self.firsts[bisect.bisect_left(self.firsts, first)]
        if resolution != NONE:
            del self.resolutions[bisect.bisect_left(self.resolutions, resolution)]


def agent_key(first: int, replier: int) -> int:
    """Whom a conversation counts for, as the facts say: the replier's id, FORMER for a reply
    by nobody (a member who left), NO_REPLY for none yet. Which ids are members is asked at each
    view (report()), so that a day kept from before someone left counts them as former too."""
    return NO_REPLY if first == NONE else FORMER if replier == NONE else replier


class Day:
    """A local day's facts and figures as they were at one moment of the database, and what
    the day looked like then (`count`, `stamp`). Never changed once kept: a view that finds the
    day changed makes a new one (patched()), while other requests may still read this one."""

    __slots__ = ("count", "stamp", "cids", "sites", "firsts", "repliers", "resolutions",
                 "labels", "total", "by_site", "by_agent", "by_label")

    def __init__(self):
        self.count = self.stamp = 0
        # The facts, in conversation id order, as columns: to find the old figures of a
        # conversation that changed.
        self.cids, self.sites, self.firsts, self.repliers, self.resolutions = (
            array(COLUMNS) for _ in range(5))
        self.labels = {}  # conversation id -> its labels' keys (label_key), for those with any
        self.total = Group()
        self.by_site, self.by_agent, self.by_label = {}, {}, {}

    @classmethod
    def made(cls, facts: list, labels: dict, count: int, stamp: int) -> "Day":
        """A day from all its facts ((conversation id, site, first response, replier,
        resolution), NONE for None) and its conversations' labels."""
        day = cls()
        facts.sort()
        day.cids, day.sites, day.firsts, day.repliers, day.resolutions = (
            array(COLUMNS, column) for column in zip(*facts, strict=True)) if facts else (
            array(COLUMNS) for _ in range(5))
        day.labels = {cid: keys for cid, keys in labels.items() if keys}
        # key -> [count, firsts, resolutions] per table, sorted once at the end.
        total, sites, agents, marks = [0, [], []], {}, {}, {}
        for cid, site, first, replier, resolution in facts:
            rows = [total, sites.setdefault(site, [0, [], []]),
                    agents.setdefault(agent_key(first, replier), [0, [], []])]
            rows += [marks.setdefault(key, [0, [], []]) for key in day.labels.get(cid, ())]
            for row in rows:
                row[0] += 1
                if first != NONE:
                    row[1].append(first)
                if resolution != NONE:
                    row[2].append(resolution)

        def group(row) -> Group:
            return Group(row[0], array(COLUMNS, sorted(row[1])), array(COLUMNS, sorted(row[2])))

        day.total = group(total)
        day.by_site = {k: group(v) for k, v in sites.items()}
        day.by_agent = {k: group(v) for k, v in agents.items()}
        day.by_label = {k: group(v) for k, v in marks.items()}
        day.count, day.stamp = count, stamp
        return day

    def patched(self, changed: list, labels: dict, count: int, stamp: int) -> "Day | None":
        """A new day: this one with the facts written since put in (new conversations added,
        changed ones in place of their old figures), or None when the day does not then
        have `count` facts: some of those kept are gone, and the day must be read whole."""
        day = Day()
        day.cids, day.sites, day.firsts, day.repliers, day.resolutions = (
            self.cids[:], self.sites[:], self.firsts[:], self.repliers[:], self.resolutions[:])
        day.labels = dict(self.labels)
        day.total = self.total.copy()
        day.by_site, day.by_agent, day.by_label = (
            dict(self.by_site), dict(self.by_agent), dict(self.by_label))
        own = set()  # the groups copied for this day (the others are still the old day's)

        def group(table: dict, key) -> Group:
            found = table.get(key)
            if found is None or id(found) not in own:
                found = table[key] = found.copy() if found is not None else Group()
                own.add(id(found))
            return found

        def groups(site, first, replier, keys):
            return [day.total, group(day.by_site, site), group(day.by_agent, agent_key(first, replier)),
                    *(group(day.by_label, key) for key in keys)]

        for cid, site, first, replier, resolution in changed:
            keys = labels.get(cid, ())
            i = bisect.bisect_left(day.cids, cid)
            if i < len(day.cids) and day.cids[i] == cid:
                was = day.firsts[i], day.resolutions[i]
                for g in groups(day.sites[i], was[0], day.repliers[i], day.labels.get(cid, ())):
                    g.remove(*was)
                day.sites[i], day.firsts[i], day.repliers[i], day.resolutions[i] = (
                    site, first, replier, resolution)
            else:
                for column, value in zip((day.cids, day.sites, day.firsts, day.repliers,
                                          day.resolutions), (cid, site, first, replier, resolution),
                                         strict=True):
                    column.insert(i, value)
            for g in groups(site, first, replier, keys):
                g.add(first, resolution)
            if keys:
                day.labels[cid] = keys
            else:
                day.labels.pop(cid, None)
        if len(day.cids) != count:
            return None
        for table in (day.by_site, day.by_agent, day.by_label):
            for key in [k for k, g in table.items() if not g.count]:
                del table[key]
        day.count, day.stamp = count, stamp
        return day


# Per database (tests and a restored backup never share a day), the days kept, least recently
# viewed first. 400 days: the 90-day view of four workspaces, or the 30-day view of thirteen,
# looked at in turn; and at most MAX_FACTS facts (about 100 bytes each kept, so some 50 MB),
# whatever the days hold. A day pushed out is read again at its next view.
MAX_DAYS, MAX_FACTS = 400, 500_000


class Kept:
    def __init__(self):
        self.days: OrderedDict = OrderedDict()
        self.facts = 0


_kept: "weakref.WeakKeyDictionary[object, Kept]" = weakref.WeakKeyDictionary()
_kept_lock = threading.Lock()  # the web app answers requests in threads


def kept_days(keys: list) -> list:
    """The kept Day of each key (or None), now the most recently viewed."""
    with _kept_lock:
        kept = _kept.get(database.obj)
        if kept is None:
            return [None] * len(keys)
        found = []
        for key in keys:
            day = kept.days.get(key)
            if day is not None:
                kept.days.move_to_end(key)
            found.append(day)
        return found


def keep_days(pairs: list) -> None:
    with _kept_lock:
        kept = _kept.get(database.obj)
        if kept is None:
            kept = _kept[database.obj] = Kept()
        for key, day in pairs:
            old = kept.days.pop(key, None)
            kept.facts += day.count - (old.count if old is not None else 0)
            kept.days[key] = day
        while kept.days and (len(kept.days) > MAX_DAYS or kept.facts > MAX_FACTS):
            kept.facts -= kept.days.popitem(last=False)[1].count


# Per day of the period, in one statement (so that all of it comes from one moment of the
# database): a row with how many facts the day has and their highest stamp, read from the
# index alone, then the day's facts with a stamp above the one given (all of them for -1).
# Column 1 says which: 0 for the day's row, 1 for a fact. (SQLite allows 500 parts of a
# UNION: a 90-day period takes 180.)
DAY_COUNT = ('SELECT {day}, 0, COUNT(*), COALESCE(MAX("stamp"), 0), CAST(NULL AS BIGINT), '
             'CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) FROM "report_fact" '
             'WHERE "workspace_id" = ? AND "started" >= ? AND "started" < ?')
DAY_FACTS = ('SELECT {day}, 1, "conversation_id", "stamp", "site_id", "first_response", '
             '"replier_id", "resolution" FROM "report_fact" WHERE "workspace_id" = ? '
             'AND "started" >= ? AND "started" < ? AND "stamp" > ?')
# The labels, by label id and the label's creation time (an id SQLite gives again after a
# deletion is another label), of the facts of a day with a stamp above the one given.
DAY_LABELS = ('SELECT cl."conversation_id", cl."label_id", l."created_at" FROM "conversation_label" cl '
              'JOIN "report_fact" f ON f."conversation_id" = cl."conversation_id" '
              'JOIN "label" l ON l."id" = cl."label_id" WHERE f."workspace_id" = ? '
              'AND f."started" >= ? AND f."started" < ? AND f."stamp" > ?')


@functools.lru_cache(maxsize=32)
def _union(parts: tuple[str, ...], n: int) -> str:
    return " UNION ALL ".join(part.format(day=i) for i in range(n) for part in parts)


def days_sql(n: int) -> str:
    """The statement for n days (DAY_COUNT and DAY_FACTS of each); its parameters come from
    days_params."""
    return sql(_union((DAY_COUNT, DAY_FACTS), n))


def days_params(workspace_id: int, asked: list) -> list:
    """asked: (start, end, stamp) of each day: its facts with a stamp above it."""
    return [value for start, end, after in asked
            for value in (workspace_id, start, end, workspace_id, start, end, after)]


def labels_sql(n: int) -> str:
    return sql(_union((DAY_LABELS,), n))


def label_key(label_id: int, created_at) -> tuple:
    """A label as the kept days know it: its id and when it was made (a datetime from peewee,
    the stored text from SQLite, a datetime from PostgreSQL: the same moment)."""
    return label_id, datetime.fromisoformat(str(created_at))


def read_days(workspace_id: int, asked: list) -> list[tuple]:
    """(count, stamp, facts, labels) of each day asked ((start, end, stamp): its facts with a
    stamp above it); facts as Day takes them."""
    found = [(0, 0, []) for _ in asked]
    cids = set()
    for day, kind, a, b, site, first, replier, resolution in database.execute_sql(
            days_sql(len(asked)), days_params(workspace_id, asked)).fetchall():
        if kind == 0:
            found[day] = (a, b, found[day][2])
        else:
            found[day][2].append((a, site, NONE if first is None else first,
                                  NONE if replier is None else replier,
                                  NONE if resolution is None else resolution))
            cids.add(a)
    labels = {}
    with_facts = [a for a, (_, _, facts) in zip(asked, found, strict=True) if facts]
    if with_facts:
        # Read after the facts: a label put on or taken off meanwhile is a chat event, which
        # the next view folds in, giving its conversation a new stamp (and its labels again).
        params = [v for start, end, after in with_facts for v in (workspace_id, start, end, after)]
        for cid, label_id, created_at in database.execute_sql(
                labels_sql(len(with_facts)), params).fetchall():
            if cid in cids:
                labels.setdefault(cid, []).append(label_key(label_id, created_at))
    return [(count, stamp, facts, {cid: tuple(labels[cid]) for cid, *_ in facts if cid in labels})
            for count, stamp, facts in found]


def period_days(workspace: Workspace, starts: list[int]) -> list[Day]:
    """The Day of each local day of the period (starts: their first seconds, then the end),
    brought up to date with the facts: those kept and unchanged as they are, the others
    patched or read again."""
    bounds = list(zip(starts, starts[1:], strict=False))
    # A workspace id SQLite gives again after a deletion is another workspace.
    keys = [(workspace.id, str(workspace.created_at), start, end) for start, end in bounds]
    days = kept_days(keys)
    todo = list(range(len(bounds)))
    fresh = []
    while todo:
        asked = [(*bounds[i], -1 if days[i] is None else days[i].stamp) for i in todo]
        again = []
        for i, (count, stamp, facts, labels) in zip(todo, read_days(workspace.id, asked),
                                                      strict=True):
            day = days[i]
            if day is not None and (day.count, day.stamp) == (count, stamp):
                continue
            new = day.patched(facts, labels, count, stamp) if day is not None else (
                Day.made(facts, labels, count, stamp))
            if new is None:
                days[i] = None  # some of its facts are gone: read the day whole
                again.append(i)
            else:
                days[i] = new
                fresh.append((keys[i], new))
        todo = again
    keep_days(fresh)
    return days


def report(workspace_id: int, days: int, now: datetime | None = None) -> Report:
    now = now or utcnow()
    bring_up_to_date(workspace_id, now)
    workspace = Workspace.get_by_id(workspace_id)
    tz_name = zone(workspace.timezone).key
    span, starts = local_days(tz_name, days, now)
    kept = period_days(workspace, starts)

    total = Row("all", "All conversations")
    by_day = []
    for d, day in zip(span, kept, strict=True):
        total.take(day.total)
        row = Row(d, d.isoformat())
        row.take(day.total)
        by_day.append(row)
    sites = {s.id: Row(s.id, s.name) for s in Site.select(Site.id, Site.name)
             .where(Site.workspace == workspace_id).order_by(Site.name, Site.id)}
    agents = {u.id: Row(u.id, u.name) for u in User.select(User.id, User.name)
              .join(Membership).where(Membership.workspace == workspace_id)}
    others = {FORMER: Row(FORMER, "Former agent"), NO_REPLY: Row(NO_REPLY, "No reply yet")}
    everyone = agents | others
    # One label per row (name order): a conversation with several labels counts for each of
    # them, one with none for none.
    labels = {label_key(lb.id, lb.created_at): Row(lb.id, lb.name)
              for lb in Label.select(Label.id, Label.name, Label.created_at)
              .where(Label.workspace == workspace_id).order_by(Label.name, Label.id)}
    for day in kept:
        for site_id, group in day.by_site.items():
            if site_id in sites:
                sites[site_id].take(group)
        # An id that is no current member's was a member who has left: a former agent.
        for key, group in day.by_agent.items():
            everyone[key if key in everyone else FORMER].take(group)
        for key, group in day.by_label.items():
            if key in labels:  # a deleted label's conversations count for no row
                labels[key].take(group)
    by_agent = sorted(agents.values(), key=lambda r: (-r.conversations, r.label.lower(), r.key))
    by_agent += [r for r in others.values() if r.conversations]
    return Report(days, tz_name, span[0], span[-1], total, by_day, list(sites.values()), by_agent,
                  list(labels.values()))


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
