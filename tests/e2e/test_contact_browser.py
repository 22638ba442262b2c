"""Contact in Chromium against the live server (web + Huey consumer + SMTP): a visitor sends the
contact form, the acknowledgement arrives, staff find the request in their queue with its due
date, answer it, and the visitor gets the answer. Every page is axe-clean, nothing breaks the
CSP."""

import re
import subprocess
from datetime import date

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import (
    BIN,
    ROOT,
    STARTUP_SECONDS,
    confirmed_user_over_http,
    log_in,
    unique_email,
    watch_csp,
)
from tests.mailcatcher import text_of


def grant_staff(live_server, email: str) -> None:
    done = subprocess.run([str(BIN / "flask"), "--app", "app", "grant-staff", email], cwd=ROOT,
                          env=live_server.env, capture_output=True, text=True,
                          timeout=STARTUP_SECONDS, check=False)
    assert done.returncode == 0, done.stderr


def long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def test_a_visitors_message_is_acknowledged_queued_for_staff_and_answered_by_email(
        live_server, new_context):
    visitor = unique_email("visitor")
    page = new_context().new_page()
    csp = watch_csp(page)
    page.goto("/contact")
    assert_accessible(page)

    form = page.locator("#contact-form")
    form.get_by_label("Your name").fill("Vera Visitor")
    form.get_by_label("Your e-mail").fill(visitor)
    form.get_by_label("What is it about?").select_option("privacy")
    form.get_by_label("Your message").fill("Please send me a copy of what you keep about me.")
    form.get_by_role("button", name="Send message").click()
    expect(page.get_by_role("heading", name="Message received")).to_be_visible()
    assert_accessible(page)

    # The acknowledgement, through the outbox, the real worker and SMTP.
    ack = text_of(live_server.wait_for_mail(visitor, "We received"))
    reference = re.search(r"LR-[0-9A-F]{8}", ack).group(0)
    expect(page.locator("#contact-sent")).to_contain_text(reference)
    ((due_on,),) = live_server.rows("SELECT due_on FROM contact_request WHERE reference = ?",
                                    (reference,))
    due = long_date(date.fromisoformat(str(due_on)[:10]))
    assert due in ack

    # Staff see it in the queue with its due date, open it and answer.
    staff_email = confirmed_user_over_http(live_server, "staff", name="Sam Staff")
    grant_staff(live_server, staff_email)
    staff = new_context().new_page()
    csp += watch_csp(staff)
    log_in(staff, staff_email)
    staff.goto("/staff/requests/")
    row = staff.get_by_role("row").filter(has_text=reference)
    expect(row).to_contain_text(due)
    expect(row).to_contain_text("Privacy request")
    assert_accessible(staff)

    row.get_by_role("link", name=reference).click()
    expect(staff.get_by_role("heading", level=1)).to_have_text(f"Request {reference}")
    expect(staff.locator(".thread")).to_contain_text("Please send me a copy")
    assert_accessible(staff)

    staff.get_by_label("Reply to the requester").fill("Here it is: we keep your name and address.")
    staff.get_by_role("button", name="Send reply").click()
    expect(staff.locator(".thread")).to_contain_text("Here it is: we keep your name and address.")
    expect(staff.locator(".facts")).to_contain_text("Answered")
    assert_accessible(staff)

    # The staff member's own workspace: its requests page and form are accessible too.
    staff.goto("/dashboard/requests")
    expect(staff.get_by_role("heading", name="File a privacy request")).to_be_visible()
    assert_accessible(staff)

    answer = text_of(live_server.wait_for_mail(visitor, f"Re: your request {reference}"))
    assert "Here it is: we keep your name and address." in answer
    assert csp == []
