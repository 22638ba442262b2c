"""Business hours: a site's weekly schedule in the workspace's time zone, and its closed days.
Openings follow the wall clock across a change of the clocks in both directions (an opening
inside the skipped hour does not happen that day; the repeated hour is open twice). Outside
hours the widget is in away mode even with an agent online (the away message, when the team is
back, the question for an e-mail); inside them the presence rule applies as before; no schedule
is always open. The editor refuses overlapping, inverted or malformed hours and bad dates
beside the field (422, nothing changed), another workspace's site is a 404, and nothing typed
runs as markup."""

import json
import re
from datetime import date, datetime, time, timedelta, timezone
from html import unescape
from zoneinfo import ZoneInfo

import pytest

from app.accounts.models import Workspace
from app.db import connection, utcnow
from app.widget import hours, language
from app.widget.hours import SiteHours, is_open, next_opening
from app.widget.models import Site
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    agent_fixture,
    online_fixture,
    rival_fixture,
    set_agent_online,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import db_state

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
ASKED = "We'll answer by e-mail."
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def at(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def every_day(text: str) -> list[str]:
    return [text] * 7


def only_on(weekday: int, text: str) -> list[str]:
    return [text if day == weekday else "" for day in range(7)]


# --- the clock -------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Europe/Paris", "Europe/Bucharest"])
def test_nine_oclock_opens_at_nine_on_both_sides_of_the_spring_change(zone):
    """The last Sunday of March the clocks go forward: nine o'clock is an hour earlier in UTC
    that day than the day before, and the schedule follows the wall clock."""
    schedule = hours.schedule(zone, every_day("09:00-17:00"))
    saturday = datetime(2025, 3, 29, 9, tzinfo=ZoneInfo(zone))
    sunday = datetime(2025, 3, 30, 9, tzinfo=ZoneInfo(zone))
    assert sunday.utcoffset() - saturday.utcoffset() == timedelta(hours=1)
    assert next_opening(schedule, at(2025, 3, 28, 20)) == saturday
    assert next_opening(schedule, at(2025, 3, 29, 18)) == sunday
    assert is_open(schedule, sunday) and not is_open(schedule, sunday - timedelta(seconds=1))
    assert is_open(schedule, saturday) and not is_open(schedule, saturday - timedelta(seconds=1))


@pytest.mark.parametrize("zone", ["Europe/Paris", "Europe/Bucharest"])
def test_nine_oclock_opens_at_nine_on_both_sides_of_the_autumn_change(zone):
    schedule = hours.schedule(zone, every_day("09:00-17:00"))
    saturday = datetime(2025, 10, 25, 9, tzinfo=ZoneInfo(zone))
    sunday = datetime(2025, 10, 26, 9, tzinfo=ZoneInfo(zone))
    assert saturday.utcoffset() - sunday.utcoffset() == timedelta(hours=1)
    assert next_opening(schedule, at(2025, 10, 24, 20)) == saturday
    assert next_opening(schedule, at(2025, 10, 25, 18)) == sunday
    assert is_open(schedule, sunday) and not is_open(schedule, sunday - timedelta(seconds=1))
    # Closing follows the wall clock too: 17:00 that day, winter time.
    assert not is_open(schedule, datetime(2025, 10, 26, 17, tzinfo=ZoneInfo(zone)))


@pytest.mark.parametrize("zone, skipped", [("Europe/Paris", "02:00-03:00"),
                                           ("Europe/Bucharest", "03:00-04:00")])
def test_an_opening_inside_the_hour_the_clocks_skip_does_not_happen_that_day(zone, skipped):
    """Sunday 30 March 2025 has no 02:00-03:00 in Paris (03:00-04:00 in Bucharest): the chat is
    not open that night, and the next opening is the next Sunday's."""
    schedule = hours.schedule(zone, only_on(6, skipped))
    night = [at(2025, 3, 29, 23) + timedelta(minutes=m) for m in range(0, 4 * 60, 5)]
    assert not any(is_open(schedule, moment) for moment in night)
    start = skipped.split("-")[0]
    expected = datetime.combine(date(2025, 4, 6), time.fromisoformat(start), ZoneInfo(zone))
    assert next_opening(schedule, at(2025, 3, 29, 12)) == expected


def test_an_opening_that_starts_in_the_skipped_hour_opens_when_the_clocks_jump():
    schedule = hours.schedule("Europe/Paris", only_on(6, "02:30-05:00"))
    jump = at(2025, 3, 30, 1)  # 02:00 winter time became 03:00 summer time
    assert next_opening(schedule, at(2025, 3, 29, 12)) == jump
    assert is_open(schedule, jump) and not is_open(schedule, jump - timedelta(seconds=1))
    assert not is_open(schedule, datetime(2025, 3, 30, 5, tzinfo=PARIS))


def test_the_hour_the_clocks_repeat_is_open_both_times():
    """Sunday 26 October 2025, Paris: 02:00-03:00 happens twice (summer, then winter time),
    and an opening of 02:00-03:00 covers both."""
    schedule = hours.schedule("Europe/Paris", only_on(6, "02:00-03:00"))
    assert next_opening(schedule, at(2025, 10, 25, 12)) == at(2025, 10, 26, 0)
    assert is_open(schedule, at(2025, 10, 26, 0, 30))  # 02:30 summer time
    assert is_open(schedule, at(2025, 10, 26, 1, 30))  # 02:30 winter time
    assert not is_open(schedule, at(2025, 10, 26, 2))  # 03:00 winter time


def test_closed_days_are_skipped_and_an_empty_week_is_open_all_day_but_those():
    christmas = {date(2025, 12, 25), date(2025, 12, 26)}
    weekdays = hours.schedule("Europe/Paris", ["09:00-17:00"] * 5 + ["", ""], christmas)
    # Wednesday evening: Thursday and Friday closed, the weekend empty, so Monday.
    assert next_opening(weekdays, at(2025, 12, 24, 17)) == datetime(2025, 12, 29, 9, tzinfo=PARIS)
    assert not is_open(weekdays, datetime(2025, 12, 25, 12, tzinfo=PARIS))

    around_the_clock = hours.schedule("Europe/Paris", every_day(""), christmas)
    assert is_open(around_the_clock, datetime(2025, 12, 24, 23, 59, tzinfo=PARIS))
    assert not is_open(around_the_clock, datetime(2025, 12, 25, 0, 0, tzinfo=PARIS))
    assert next_opening(around_the_clock, datetime(2025, 12, 25, 8, tzinfo=PARIS)) == \
        datetime(2025, 12, 27, 0, 0, tzinfo=PARIS)


def test_open_past_midnight_is_two_days_that_meet():
    schedule = hours.schedule("UTC", ["", "", "", "", "18:00-24:00", "00:00-02:00", ""])
    assert is_open(schedule, at(2025, 6, 6, 23, 59))  # Friday night
    assert is_open(schedule, at(2025, 6, 7, 0, 0))  # Saturday, just after midnight
    assert not is_open(schedule, at(2025, 6, 7, 2, 0))


def test_the_next_opening_is_told_by_day_name_and_by_date_a_week_or_more_ahead():
    """The words the chat shows without the frame's script (which writes the same on the
    visitor's clock): today, tomorrow, a weekday within the week, else the date too."""
    now = datetime(2025, 6, 2, 20, tzinfo=PARIS)  # a Monday evening
    said = [hours.reopening_text(now + timedelta(days=d, hours=h), PARIS, now)
            for d, h in ((0, 1), (1, -11), (3, -11), (7, -11))]
    assert said == ["today 21:00 (Europe/Paris time)", "tomorrow 09:00 (Europe/Paris time)",
                    "Thursday 09:00 (Europe/Paris time)",
                    "Monday 9 June 09:00 (Europe/Paris time)"]


@pytest.mark.parametrize("code, expected", [
    ("fr", ["aujourd'hui 21:00 (heure de Europe/Paris)", "jeudi 09:00 (heure de Europe/Paris)",
            "lundi 9 juin 09:00 (heure de Europe/Paris)"]),
    ("de", ["heute 21:00 (Zeit in Europe/Paris)", "Donnerstag 09:00 (Zeit in Europe/Paris)",
            "Montag 9 Juni 09:00 (Zeit in Europe/Paris)"]),
])
def test_the_next_opening_is_told_in_the_widgets_language(code, expected):
    """Without the frame's script too, no English word in a French or German chat: day and
    month names from CLDR, "today" and the zone's words from the catalogues."""
    now = datetime(2025, 6, 2, 20, tzinfo=PARIS)  # a Monday evening
    with language.speaking(code):
        said = [hours.reopening_text(now + timedelta(days=d, hours=h), PARIS, now)
                for d, h in ((0, 1), (3, -11), (7, -11))]
    assert said == expected


def test_a_site_without_a_schedule_is_always_open(app, site):
    with app.app_context(), connection():
        assert is_open(site, utcnow())
        assert hours.status(site).open


# --- the editor on the site's page ------------------------------------------------------------


def hours_url(site) -> str:
    return f"/dashboard/sites/{site.id}/hours"


def save(client, site, closed_days="", **days):
    data = {name: days.get(name, "") for name in WEEKDAYS}
    data["closed_days"] = closed_days
    return client.post_form(hours_url(site), data, htmx=True)


def stored(site) -> dict | None:
    with connection():
        row = SiteHours.get_or_none(SiteHours.site == site.id)
    return row and {"weekly": json.loads(row.weekly), "closed_days": json.loads(row.closed_days)}


def test_hours_are_saved_and_shown_back(auth, site):
    response = save(auth, site, monday="9:00-12:30,13:30 - 18:00", friday="08:00-24:00",
                    closed_days="2025-12-26\n2025-12-25, 2025-12-25")
    assert response.status_code == 200, text(response)
    html = text(response)
    assert "Business hours saved." in html
    assert 'value="09:00-12:30, 13:30-18:00"' in html
    assert "2025-12-25\n2025-12-26</textarea>" in html
    assert stored(site) == {"weekly": [[["09:00", "12:30"], ["13:30", "18:00"]], [], [], [],
                                       [["08:00", "24:00"]], [], []],
                            "closed_days": ["2025-12-25", "2025-12-26"]}
    page = text(auth.get(f"/dashboard/sites/{site.id}"))
    assert 'id="hours-form"' in page and 'value="09:00-12:30, 13:30-18:00"' in page
    assert "Times in UTC, the workspace's time zone" in page


def test_every_day_empty_and_no_closed_day_is_no_schedule(auth, site):
    save(auth, site, monday="09:00-17:00")
    assert stored(site) is not None
    assert save(auth, site).status_code == 200
    assert stored(site) is None
    assert "No business hours set" in text(auth.get(f"/dashboard/sites/{site.id}"))


BAD = [
    ("monday", "09:00-12:00, 11:00-13:00", "09:00-12:00 and 11:00-13:00 overlap"),
    ("tuesday", "17:00-09:00", "17:00-09:00 closes before it opens"),
    ("wednesday", "09:00-09:00", "09:00-09:00 closes before it opens"),
    ("thursday", "25:00-26:00", "25:00 is not a time of day: use HH:MM, from 00:00 to 24:00."),
    ("friday", "09:60-10:00", "09:60 is not a time of day"),
    ("saturday", "9am-5pm", "“9am-5pm” is not an interval."),
    ("sunday", "24:00-24:00", "24:00 can only close a day"),
    ("closed_days", "31/12/2025", "“31/12/2025” is not a date: write each as YYYY-MM-DD"),
    ("closed_days", "2025-02-31", "“2025-02-31” is not a date"),
]


@pytest.mark.parametrize("field, value, message", BAD)
def test_bad_hours_are_refused_beside_their_field_and_change_nothing(auth, site, field, value,
                                                                     message):
    assert save(auth, site, monday="09:00-17:00", closed_days="2025-12-25").status_code == 200
    before = db_state(SiteHours)
    response = save(auth, site, **{"monday": "10:00-16:00", field: value})
    assert response.status_code == 422
    html = text(response)
    assert message in unescape(html)
    tag = re.search(rf'<(?:input|textarea)\b[^>]*\bid="{field}"[^>]*>', html)[0]
    assert 'aria-invalid="true"' in tag and f"{field}-error" in tag
    assert f'id="{field}-error"' in html
    assert db_state(SiteHours) == before


def test_several_bad_days_are_each_named_at_once(auth, site):
    response = save(auth, site, monday="17:00-09:00", friday="12:00-14:00, 13:00-15:00")
    assert response.status_code == 422
    html = unescape(text(response))
    assert 'id="monday-error"' in html and 'id="friday-error"' in html
    assert stored(site) is None


def test_markup_in_the_hours_is_shown_as_text(auth, site):
    response = save(auth, site, monday='<script>alert(1)</script>',
                    closed_days='<img src=x onerror="alert(2)">')
    assert response.status_code == 422
    html = text(response)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert stored(site) is None


def test_another_workspaces_site_is_not_found(auth, rival):
    before = db_state(SiteHours, Site)
    assert auth.get(hours_url(rival["site"])).status_code == 404
    assert save(auth, rival["site"], monday="09:00-17:00").status_code == 404
    assert db_state(SiteHours, Site) == before


def test_a_post_without_the_csrf_token_is_refused(auth, site):
    data = {name: "09:00-17:00" for name in WEEKDAYS}
    response = auth.post(hours_url(site), data=data, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert stored(site) is None


def test_an_agent_sees_the_hours_but_cannot_change_them(auth, agent, site):
    save(auth, site, monday="09:00-17:00")
    page = text(agent["client"].get(f"/dashboard/sites/{site.id}"))
    assert "Business hours" in page and 'id="hours-form"' not in page
    assert "09:00-17:00" in page
    assert save(agent["client"], site, monday="00:00-24:00").status_code == 403
    assert stored(site)["weekly"][0] == [["09:00", "17:00"]]


def test_the_schedule_goes_with_its_site(app, auth, site):
    save(auth, site, monday="09:00-17:00")
    with connection():
        Site.delete().where(Site.id == site.id).execute()
        assert SiteHours.select().count() == 0


# --- the widget --------------------------------------------------------------------------------


def in_paris(ws):
    with connection():
        Workspace.update(timezone="Europe/Paris").where(Workspace.id == ws).execute()


def closed_now(auth, site) -> datetime:
    """Hours on one day only, three days from today in Paris (so closed now, whatever the
    time): that day's 09:00 in Paris, the next opening."""
    day = datetime.now(PARIS).date() + timedelta(days=3)
    assert save(auth, site, **{WEEKDAYS[day.weekday()]: "09:00-17:00"}).status_code == 200
    return datetime.combine(day, time(9), PARIS)


def test_outside_hours_the_chat_is_away_even_with_an_agent_online(auth, ws, site, online,
                                                                  visitor):
    in_paris(ws)
    opening = closed_now(auth, site)
    html = text(visitor.chat())
    assert site.away_message in unescape(html)
    back = re.search(r'<p class="w-away" id="back-at">We\'re back <time datetime="([^"]+)" '
                     r'data-visitor-clock>([^<]+)</time>\.</p>', html)
    assert back, html
    assert datetime.fromisoformat(back[1]) == opening
    assert back[2] == f"{opening:%A} 09:00 (Europe/Paris time)"
    assert 'id="w-email"' not in html  # the message first, as in away mode
    # The first words are kept, then the chat asks where to answer: a team online outside
    # hours does not answer live.
    first = visitor.send("Are you open on Sunday?")
    assert first.status_code == 200 and ASKED in text(first)
    second = text(visitor.send("Hello?"))
    assert ASKED in second and 'hx-swap-oob="true"' in second
    page = text(auth.get(f"/dashboard/sites/{site.id}"))
    assert f"Closed now</strong>: back {opening:%A} 09:00 (Europe/Paris time)." in page


def test_inside_hours_the_chat_follows_who_is_online(auth, ws, site, visitor):
    in_paris(ws)
    save(auth, site, **{day: "00:00-24:00" for day in WEEKDAYS})
    nobody = text(visitor.chat())
    assert 'id="away"' in nobody and 'id="back-at"' not in nobody

    set_agent_online(ws)
    html = text(visitor.chat())
    assert 'id="away"' not in html and 'id="back-at"' not in html
    assert "Your e-mail (optional)" in html
    assert ASKED not in text(visitor.send("Hello"))
    assert "Open now." in text(auth.get(f"/dashboard/sites/{site.id}"))


def test_clearing_the_hours_opens_the_chat_again_at_once(auth, ws, site, online, visitor):
    in_paris(ws)
    closed_now(auth, site)
    assert 'id="back-at"' in text(visitor.chat())
    save(auth, site)
    html = text(visitor.chat())
    assert 'id="away"' not in html and 'id="back-at"' not in html
