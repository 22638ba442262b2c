"""Business hours in Chromium: the owner sets hours on the site's page (a refused interval is
said beside its day), and outside them a visitor in New York, while the owner has the
dashboard open, gets the away mode: the away message, when the team is back written on the
visitor's own clock (the workspace is on Paris time), and the question for an e-mail once their
message is kept. No console error in the chat, and both pages pass axe."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import log_in, snippet_page, wait_until
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    SITE_FIELDS,
    chat_frame,
    console_fixture,
    make_widget_site,
    open_chat,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = "America/New_York"


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    # The workspace's time zone, where the automations' settings keep it.
    answer = made.owner.post_form("/dashboard/automations", "/dashboard/automations/settings",
                                  timezone="Europe/Paris", run_log_days="30")
    assert answer.status_code == 200, answer.text[:2000]
    yield made
    made.owner.http.close()


def test_outside_hours_a_visitor_sees_when_the_team_is_back_on_their_own_clock(
        new_context, console, site, host_site, live_server):
    # Hours on one day only, three days from today in Paris: closed now, whatever the time.
    day = datetime.now(PARIS).date() + timedelta(days=3)
    opening = datetime.combine(day, time(9), PARIS)
    weekday = f"{opening:%A}"

    owner = new_context().new_page()
    log_in(owner, site.owner_email)
    owner.goto(site.page_path)
    hours = owner.locator("#hours")
    hours.get_by_label(weekday, exact=True).fill("17:00-09:00")
    hours.get_by_role("button", name="Save business hours").click()
    expect(hours.locator(f"#{weekday.lower()}-error")).to_contain_text("closes before it opens")
    expect(hours.get_by_label(weekday, exact=True)).to_have_attribute("aria-invalid", "true")
    hours.get_by_label(weekday, exact=True).fill("09:00-17:00")
    hours.get_by_role("button", name="Save business hours").click()
    expect(hours.get_by_role("status")).to_have_text("Business hours saved.")
    expect(hours.locator("#hours-now")).to_have_text(
        f"Closed now: back {weekday} 09:00 (Europe/Paris time).")
    assert_accessible(owner)
    # The owner's open dashboard is the team online: outside hours that changes nothing.
    wait_until(lambda: live_server.rows("SELECT 1 FROM presence WHERE kind = 'agent'"), 10,
               "the owner's dashboard stream to count them online")

    visitor = console.watch(new_context(timezone_id=NEW_YORK)).new_page()
    visitor.goto(host_site.add(f"/hours-{site.key}.html", snippet_page(site.snippet)))
    chat = open_chat(visitor)
    expect(chat.locator("#away")).to_have_text(SITE_FIELDS["away_message"])
    there = opening.astimezone(ZoneInfo(NEW_YORK))
    expect(chat.locator("#back-at")).to_have_text(
        f"We're back {there:%A} {there:%H:%M} (your time).")
    expect(chat.locator("#back-at time")).to_have_attribute(
        "datetime", opening.astimezone(ZoneInfo("UTC")).isoformat())
    expect(chat.get_by_label("Your e-mail (optional)")).to_have_count(0)
    assert_accessible(chat_frame(visitor))

    chat.get_by_label("Message", exact=True).fill("Can I collect on Saturday?")
    chat.get_by_role("button", name="Send", exact=True).click()
    expect(chat.get_by_text("We'll answer by e-mail.")).to_be_visible()
    expect(chat.get_by_label("Your e-mail address", exact=True)).to_be_visible()
    # The chat loaded again with the whole conversation: still on the visitor's clock.
    expect(chat.locator("#back-at")).to_contain_text("(your time)")
    assert_accessible(chat_frame(visitor))
