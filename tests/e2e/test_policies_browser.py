"""Policies in Chromium against a server of its own (a published version shows a notice to
everyone on it): staff publish a material change, the e-mail arrives over SMTP, an owner
sees the notice on the dashboard, acknowledges it, and it is gone on the next page; the
policy pages and the staff form pass axe."""

import subprocess
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from app.db import utcnow
from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import BIN, PASSWORD, ROOT, LiveServer, confirmed_user_over_http
from tests.mailcatcher import MailCatcher

NOTICE = "#policy-notice"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    smtp = MailCatcher().start()
    live = LiveServer(tmp_path_factory.mktemp("lumnar-policies"), smtp)
    try:
        yield live.boot().wait_ready()
    finally:
        live.stop()
        smtp.stop()


def grant_staff(server, email: str) -> None:
    done = subprocess.run([str(BIN / "flask"), "--app", "app", "grant-staff", email], cwd=ROOT,
                          env=server.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def log_in(page, server, email: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard/inbox")


def day_in(days: int) -> str:
    return (utcnow() + timedelta(days=days)).date().isoformat()


def test_staff_publish_a_material_change_owners_are_emailed_and_acknowledge_the_notice(
        server, new_context):
    owner = confirmed_user_over_http(server, "owner")
    staff = confirmed_user_over_http(server, "staff", name="Stella Staff")
    grant_staff(server, staff)

    # The owner's dashboard has no notice yet.
    owner_page = new_context().new_page()
    log_in(owner_page, server, owner)
    expect(owner_page.locator(NOTICE)).to_have_count(0)

    page = new_context().new_page()
    log_in(page, server, staff)
    page.goto(server.url + "/staff/policies")
    assert_accessible(page)
    text = page.get_by_label("Text (Markdown", exact=False)
    expect(text).to_contain_text("one-way hash of your password")  # version 1, to start from
    text.fill(text.input_value() + "\n\n## Chat retention\n\nChats are kept for one year at most.\n")
    page.get_by_label("What changes", exact=False).fill("Chats are now kept for one year at most.")
    page.get_by_label("Material change", exact=False).check()

    # Too soon: refused beside the date, nothing published.
    page.get_by_label("Takes effect on", exact=False).fill(day_in(10))
    page.get_by_role("button", name="Publish").click()
    refusal = page.locator("#effective_on-error")
    expect(refusal).to_contain_text("at least 30 days after it is published")
    assert_accessible(page)
    assert server.rows("SELECT count(*) FROM policy_version WHERE announced") == [(0,)]

    page.get_by_label("Takes effect on", exact=False).fill(day_in(31))
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_text("Version 2 of the privacy policy is published")).to_be_visible()

    # The e-mail arrives over SMTP, from the real worker.
    mail = server.wait_for_mail(owner, "privacy policy changes on")
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "Chats are now kept for one year at most." in body
    assert "/privacy/diff?from=1&to=2" in body
    assert "unsubscribe" not in mail.as_string().lower()

    # The owner sees the notice, acknowledges it, and it is gone on the next page.
    owner_page.goto(server.url + "/dashboard/settings")
    notice = owner_page.locator(NOTICE)
    expect(notice).to_contain_text("Chats are now kept for one year at most.")
    expect(notice).to_contain_text("takes effect on")
    assert_accessible(owner_page)
    notice.get_by_role("button", name="I have read this").click()
    owner_page.wait_for_url("**/dashboard/settings")
    expect(owner_page.locator(NOTICE)).to_have_count(0)
    owner_page.goto(server.url + "/dashboard/inbox")
    expect(owner_page.get_by_role("heading", name="Inbox").first).to_be_visible()
    expect(owner_page.locator(NOTICE)).to_have_count(0)
    assert server.rows(
        "SELECT v.version FROM policy_acknowledgement a JOIN policy_version v ON v.id = a.version_id"
        ' JOIN "user" u ON u.id = a.user_id WHERE u.email = ?', (owner,)) == [(2,)]


def test_policy_pages_pass_axe(server, page):
    page.goto(server.url + "/privacy")
    expect(page.get_by_role("heading", name="Privacy policy", exact=True)).to_be_visible()
    assert_accessible(page)
    for path in ("/privacy/diff?from=1&to=2", "/privacy/diff?from=1&to=x",
                 "/privacy/providers", "/cookies", "/privacy/versions/1"):
        page.goto(server.url + path)
        assert_accessible(page)
