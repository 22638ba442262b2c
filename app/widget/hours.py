"""A site's business hours: a weekly schedule in the workspace's time zone and the days it is
closed. Outside them the widget is in away mode whoever is online (the chat keeps the
visitor's words, says when the team is back and asks where to answer by e-mail). A site with
no schedule is always open, as before schedules existed.

Each weekday holds up to eight intervals, "09:00-12:30, 13:30-18:00", read as wall-clock
times of that day in the workspace's zone; 24:00 closes at midnight. Around a change of the
clocks: a time the clocks skip that day counts as the moment they jump (so an interval wholly
inside the skipped hour does not happen that day), and a time that happens twice counts from
its first occurrence (so 02:00-03:00 on the night the clocks go back is open both hours)."""

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import current_app
from peewee import DateTimeField, ForeignKeyField, TextField

from app.accounts.models import Workspace
from app.chat import service as chat_service
from app.db import BaseModel, database, utcnow
from app.errors import RuleError
from app.shortcache import cache_for
from app.timezones import zone
from app.widget import language
from app.widget import service as widget_service
from app.widget.models import Site

UTC = timezone.utc
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAY_MINUTES = 24 * 60
MAX_INTERVALS = 8  # a day's intervals
MAX_CLOSED_DAYS = 400  # a year ahead and some
INTERVAL = re.compile(r"(\d{1,2}):(\d{2})\s*[-–—]\s*(\d{1,2}):(\d{2})")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
HOW = "Write hours like 09:00-17:00, several with commas: 09:00-12:00, 13:00-17:00."


class SiteHours(BaseModel):
    """A site's schedule (no row: always open). `weekly`: seven lists, Monday first, of
    ["HH:MM", "HH:MM"] intervals; `closed_days`: ISO dates, sorted."""

    site = ForeignKeyField(Site, unique=True, on_delete="CASCADE", backref="hours_rows")
    weekly = TextField(default="[]")
    closed_days = TextField(default="[]")
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "site_hours"


HOURS_MODELS = [SiteHours]


@dataclass(frozen=True)
class Schedule:
    """A schedule ready to answer: `weekly` holds each weekday's intervals in minutes since
    midnight, or is None for "all day, every day" (then only the closed days close)."""

    zone: ZoneInfo
    weekly: tuple | None
    closed: frozenset = frozenset()

    @property
    def always_open(self) -> bool:
        return self.weekly is None and not self.closed


ALWAYS_OPEN = Schedule(zone("UTC"), None)


# --- reading times and dates --------------------------------------------------------------------


def _clock(hours: str, minutes: str, text: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > DAY_MINUTES:
        raise ValueError(f"{text} is not a time of day: use HH:MM, from 00:00 to 24:00.")
    return value


def _shown(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_day(text: str) -> list[tuple[int, int]]:
    """One weekday's intervals in minutes, sorted; ValueError saying what is wrong (a time
    that is not one, an interval that closes before it opens, two that overlap)."""
    parts = [p.strip() for p in re.split(r"[,;\n]", text or "") if p.strip()]
    if len(parts) > MAX_INTERVALS:
        raise ValueError(f"At most {MAX_INTERVALS} intervals a day.")
    intervals = []
    for part in parts:
        found = INTERVAL.fullmatch(part)
        if found is None:
            raise ValueError(f"“{part[:40]}” is not an interval. {HOW}")
        start = _clock(found[1], found[2], f"{found[1]}:{found[2]}")
        end = _clock(found[3], found[4], f"{found[3]}:{found[4]}")
        if start == DAY_MINUTES:
            raise ValueError("24:00 can only close a day: open at 00:00 instead.")
        if end <= start:
            raise ValueError(f"{_shown(start)}-{_shown(end)} closes before it opens. To stay "
                             "open past midnight, close at 24:00 and open the next day at 00:00.")
        intervals.append((start, end))
    intervals.sort()
    for (a_start, a_end), (b_start, b_end) in pairwise(intervals):
        if b_start < a_end:
            raise ValueError(f"{_shown(a_start)}-{_shown(a_end)} and {_shown(b_start)}-"
                             f"{_shown(b_end)} overlap: make them one interval, or end one "
                             "before the other starts.")
    return intervals


def parse_closed_days(text: str) -> list[date]:
    """Dates, one a line (or comma separated), as YYYY-MM-DD: sorted, each once."""
    days = set()
    for part in (p.strip() for p in re.split(r"[,;\s]+", text or "")):
        if not part:
            continue
        try:
            if not ISO_DATE.fullmatch(part):
                raise ValueError
            days.add(date.fromisoformat(part))
        except ValueError:
            raise ValueError(f"“{part[:40]}” is not a date: write each as YYYY-MM-DD, like "
                             "2025-12-25.") from None
    if len(days) > MAX_CLOSED_DAYS:
        raise ValueError(f"At most {MAX_CLOSED_DAYS} closed days.")
    return sorted(days)


def shown_day(intervals) -> str:
    """A day's intervals as the editor shows them (and parse_day reads them back)."""
    return ", ".join(f"{_shown(start)}-{_shown(end)}" for start, end in intervals)


# --- the schedule of a site ---------------------------------------------------------------------------


def schedule(zone_name: str, days: list[str], closed=()) -> Schedule:
    """A schedule from each weekday's hours as the editor writes them (Monday first) and its
    closed dates; ValueError as parse_day says."""
    weekly = [tuple(parse_day(text)) for text in days]
    return Schedule(zone(zone_name), tuple(weekly) if any(weekly) else None, frozenset(closed))


def _stored(weekly_json: str, closed_json: str, zone_name: str) -> Schedule:
    return schedule(zone_name, [", ".join(f"{a}-{b}" for a, b in day) for day in json.loads(weekly_json)],
                    (date.fromisoformat(d) for d in json.loads(closed_json)))


def load(site_id: int) -> Schedule:
    """The site's schedule, read now (ALWAYS_OPEN without one)."""
    row = (SiteHours.select(SiteHours.weekly, SiteHours.closed_days, Workspace.timezone)
           .join(Site).join(Workspace).where(SiteHours.site == site_id).tuples().first())
    return ALWAYS_OPEN if row is None else _stored(*row)


def schedule_of(site: Site) -> Schedule:
    """The site's schedule from the widget's short cache (asked on every chat load and every
    visitor message); dropped with the site's row when either is saved here."""
    # The widget's own cache, tagged as the site: widget_service.forget_site() drops both.
    return cache_for(current_app, "widget").get(("hours", site.id), lambda: load(site.id),
                                                tag_of=lambda _: ("site", site.id))


def save(site: Site, days: list[str], closed_days: str) -> Schedule:
    """Store the site's schedule from the editor's texts (seven, Monday first); a HoursError
    with a message beside each bad one changes nothing. Every day empty and no closed day:
    the row goes (always open)."""
    weekly, errors = [], {}
    for day, text in zip(DAYS, days, strict=True):
        try:
            weekly.append(parse_day(text))
        except ValueError as err:
            errors[day.lower()] = str(err)
    try:
        closed = parse_closed_days(closed_days)
    except ValueError as err:
        errors["closed_days"] = str(err)
    if errors:
        raise HoursError(errors)
    with database.atomic():
        if not any(weekly) and not closed:
            SiteHours.delete().where(SiteHours.site == site.id).execute()
        else:
            values = {"weekly": json.dumps([[[_shown(a), _shown(b)] for a, b in day]
                                            for day in weekly]),
                      "closed_days": json.dumps([d.isoformat() for d in closed]),
                      "updated_at": utcnow()}
            (SiteHours.insert(site=site.id, **values)
             .on_conflict(conflict_target=[SiteHours.site], update=values).execute())
    widget_service.forget_site(site.id)  # the widget follows the new hours at once
    return load(site.id)


class HoursError(RuleError):
    """A schedule refused: `errors` holds each bad field's message (a weekday's name in lower
    case, or closed_days), to show beside it."""

    def __init__(self, errors: dict):
        super().__init__(" ".join(errors.values()), field=next(iter(errors)))
        self.errors = errors


# --- open or not, and when next -----------------------------------------------------------------


def _utc(at: datetime) -> datetime:
    """An instant as aware UTC (a naive one is UTC, as the database keeps them)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _instant(zone: ZoneInfo, day: date, minute: int) -> datetime:
    """The UTC instant of `minute` past midnight of `day` on the zone's wall clock (1440: the
    next midnight). A skipped time is the moment of the jump; a repeated one its first."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    after = wall.replace(tzinfo=zone).astimezone(UTC)  # fold 0: the first of a repeated time
    if after.astimezone(zone).replace(tzinfo=None) == wall:
        return after
    # Skipped: `after` lies past the jump, the same wall time read with the later offset
    # before it. The jump is the first second whose wall clock reads `wall` or later.
    before = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    later = int(after.timestamp())
    while later - before > 1:
        middle = (before + later) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            later = middle
        else:
            before = middle
    return datetime.fromtimestamp(later, UTC)


def _intervals(schedule: Schedule, day: date):
    """The day's open intervals as UTC instants [start, end), those that happen."""
    if day in schedule.closed:
        return
    for start, end in (((0, DAY_MINUTES),) if schedule.weekly is None
                       else schedule.weekly[day.weekday()]):
        opens, closes = _instant(schedule.zone, day, start), _instant(schedule.zone, day, end)
        if opens < closes:
            yield opens, closes


def _as_schedule(site_or_schedule) -> Schedule:
    return site_or_schedule if isinstance(site_or_schedule, Schedule) else schedule_of(site_or_schedule)


def is_open(site_or_schedule, at_utc: datetime) -> bool:
    schedule = _as_schedule(site_or_schedule)
    if schedule.always_open:
        return True
    at = _utc(at_utc)
    today = at.astimezone(schedule.zone).date()
    # The day before too: where the clocks go back at midnight, its last hour repeats.
    return any(opens <= at < closes for day in (today - timedelta(days=1), today)
               for opens, closes in _intervals(schedule, day))


def next_opening(schedule: Schedule, at_utc: datetime) -> datetime | None:
    """The first instant at or after `at_utc` when the schedule is open (aware UTC): `at_utc`
    itself while open. None if it never opens again (every interval skipped by the clocks)."""
    at = _utc(at_utc)
    if is_open(schedule, at):
        return at
    today = at.astimezone(schedule.zone).date()
    # Past the closed days there is a whole week of the weekly schedule.
    for offset in range(-1, len(schedule.closed) + 9):
        for opens, _ in _intervals(schedule, today + timedelta(days=offset)):
            if opens >= at:
                return opens
    return None


@dataclass(frozen=True)
class Status:
    """What the widget needs at a moment: within the site's hours or not, and if not when it
    opens next (aware UTC; None if never) and that time as the workspace's clock shows it."""

    open: bool
    reopens: datetime | None = None
    reopens_shown: str = ""


def status(site: Site, at_utc: datetime | None = None) -> Status:
    schedule = schedule_of(site)
    at = _utc(at_utc or utcnow())
    if is_open(schedule, at):
        return Status(True)
    reopens = next_opening(schedule, at)
    return Status(False, reopens, reopens and reopening_text(reopens, schedule.zone, at) or "")


def reopening_text(reopens: datetime, zone: ZoneInfo, now: datetime) -> str:
    """When the team is back on the workspace's clock ("tomorrow 09:00", "Monday 09:00", with
    the date a week or more ahead), in the language the widget speaks, for a browser that does
    not rewrite it on the visitor's own clock as static/widget/frame.js does (by the same rule).
    Day and month names are CLDR's (Babel), as the browser's Intl gives them."""
    local = reopens.astimezone(zone)
    days = (local.date() - _utc(now).astimezone(zone).date()).days
    code = language.current()
    day = {0: language.translate("today"), 1: language.translate("tomorrow")}.get(days) or (
        format_date(local.date(), "EEEE" if days < 7 else "EEEE d MMMM", locale=code))
    return f"{day} {local:%H:%M} " + language.translate("(%(zone)s time)", zone=zone.key)


def team_away(site: Site, within: Status | None = None) -> bool:
    """Away mode: outside the site's hours whoever is online, or inside them with nobody from
    the team online. `within`: the site's status() already asked."""
    open_now = within.open if within else is_open(site, utcnow())
    return not open_now or not chat_service.agents_online(site.workspace_id)
