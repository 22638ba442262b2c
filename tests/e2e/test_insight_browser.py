"""Usage insight in Chromium against the live server: an owner stops the counting of their
visits in Settings and their next pages are not counted (read from the server's database once
its web process has written its counts); Settings and the staff charts are axe-clean."""

import subprocess

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import (
    BIN,
    ROOT,
    STARTUP_SECONDS,
    confirmed_user_over_http,
    log_in,
    wait_until,
)

# The web process writes its counts every few seconds (app/insight/service.py FLUSH_SECONDS):
# a deadline for a busy machine, not a speed requirement.
WRITTEN_WITHIN = 30


def counted(live_server, name: str) -> int:
    ((total,),) = live_server.rows(
        'SELECT COALESCE(SUM("count"), 0) FROM "insight_count" WHERE "kind" = ? AND "name" = ?',
        ("page", name))
    return int(total)


def wait_for_count_above(live_server, name: str, floor: int) -> int:
    wait_until(lambda: counted(live_server, name) > floor, WRITTEN_WITHIN,
               f"the page views of {name} written by the web process")
    return counted(live_server, name)


def grant_staff(live_server, email: str) -> None:
    done = subprocess.run([str(BIN / "flask"), "--app", "app", "grant-staff", email], cwd=ROOT,
                          env=live_server.env, capture_output=True, text=True,
                          timeout=STARTUP_SECONDS, check=False)
    assert done.returncode == 0, done.stderr


def test_an_owner_who_objects_in_settings_is_no_longer_counted(page, live_server, new_context):
    email = confirmed_user_over_http(live_server, "insight")
    settings_before = counted(live_server, "accounts.settings")
    log_in(page, email)
    page.goto("/dashboard/settings")
    section = page.locator("#insight")
    expect(section.get_by_role("heading", name="Counting your visits")).to_be_visible()
    assert_accessible(page)
    # Counted so far: once this view is written, the log-in's inbox before it is written too.
    settings_seen = wait_for_count_above(live_server, "accounts.settings", settings_before)
    inbox_seen = counted(live_server, "chat.inbox")
    assert inbox_seen >= 1

    section.get_by_role("button", name="Stop counting my visits").click()
    expect(section.get_by_role("status")).to_have_text("Your visits are no longer counted.")
    expect(section.get_by_role("button", name="Count my visits again")).to_be_visible()
    assert_accessible(page)

    page.goto("/dashboard/inbox")
    page.goto("/dashboard/settings")
    expect(page.locator("#insight")).to_contain_text("Your visits are not counted.")
    page.goto("/dashboard/inbox")

    # A visitor's view of the pricing page afterwards is counted; once it is written, anything
    # the owner's views had added would be written too.
    visitor = new_context().new_page()
    pricing_before = counted(live_server, "public.pricing")
    visitor.goto("/pricing")
    wait_for_count_above(live_server, "public.pricing", pricing_before)
    assert counted(live_server, "chat.inbox") == inbox_seen
    assert counted(live_server, "accounts.settings") == settings_seen


def test_staff_see_the_usage_charts(page, live_server):
    email = confirmed_user_over_http(live_server, "insight-staff", name="Ada Staff")
    grant_staff(live_server, email)
    log_in(page, email)
    page.goto("/staff/insight")
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage insight")
    expect(page.get_by_role("img", name="Page views per day over the last 30 days")).to_be_visible()
    expect(page.get_by_role("heading", name="Most viewed pages")).to_be_visible()
    assert_accessible(page)
