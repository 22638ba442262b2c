"""Accounts in a real browser against the real server, worker and SMTP (see conftest.py)."""

import re
from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import PASSWORD, log_in, sign_up, unique_email
from tests.mailcatcher import link_in

LOCKOUT_ATTEMPTS = 10  # the default of LUMNAR_LOCKOUT_ATTEMPTS


def watch_csp(page) -> list[str]:
    """Console messages about Content Security Policy violations on this page, as they come."""
    seen = []
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    return seen


def submit_swap(page, form_selector: str, button: str) -> None:
    """Click `button` in an htmx form and wait until the answer has replaced the form."""
    old = page.locator(form_selector).element_handle()
    page.get_by_role("button", name=button).click()
    old.wait_for_element_state("hidden")  # "hidden" includes detached: outerHTML swapped it


def test_sign_up_confirm_by_email_and_log_in_lands_in_the_inbox(page, live_server):
    csp = watch_csp(page)
    for path in ("/", "/privacy"):
        page.goto(path)
        assert_accessible(page)

    email = unique_email("signup")
    page.goto("/signup")
    assert_accessible(page)
    page.get_by_label("Your name", exact=True).fill("Sam Signup")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password (at least 10 characters)", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.get_by_text(email)).to_be_visible()

    # Through the outbox, the real Huey consumer and SMTP to the catcher.
    msg = live_server.wait_for_mail(email, "Confirm your e-mail")
    link = link_in(msg)
    assert link.startswith(live_server.url + "/verify/"), link
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator("#flash")).to_contain_text("Your e-mail address is confirmed")
    assert_accessible(page)

    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/inbox$"))
    expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()
    assert_accessible(page)

    for path, heading in (("/dashboard/settings", "Settings"), ("/dashboard/team", "Team of")):
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        assert_accessible(page)
    assert csp == []


def test_dashboard_live_indicator_connects_over_sse(page, verified_user):
    email = verified_user("live")
    page.goto("/login")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_response(lambda r: urlsplit(r.url).path == "/sse/dashboard") as stream:
        page.get_by_role("button", name="Log in").click()
    assert stream.value.status == 200
    assert stream.value.headers["content-type"].startswith("text/event-stream")
    # The page is served saying "connecting…"; only an SSE "status" event changes it.
    expect(page.get_by_text("Live updates: connected")).to_be_visible()


def test_ten_wrong_passwords_lock_the_address_even_for_the_right_password(page, verified_user):
    email = verified_user("lockout")
    page.goto("/login")
    page.get_by_label("E-mail", exact=True).fill(email)
    form_error = page.locator("#login-form [role=alert]")
    for attempt in range(1, LOCKOUT_ATTEMPTS + 1):
        page.get_by_label("Password", exact=True).fill(f"wrong password {attempt}")
        submit_swap(page, "#login-form", "Log in")
        if attempt < LOCKOUT_ATTEMPTS:
            expect(form_error).to_contain_text("do not match")
    expect(form_error).to_contain_text("locked")

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    submit_swap(page, "#login-form", "Log in")
    expect(form_error).to_contain_text("locked")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_changing_the_password_logs_out_the_other_browser_but_not_this_one(
        context, new_context, verified_user):
    email = verified_user("twobrowsers")
    here, elsewhere = context.new_page(), new_context().new_page()
    log_in(here, email)
    log_in(elsewhere, email)

    here.goto("/dashboard/settings")
    password = here.get_by_role("region", name="Password", exact=True)
    password.get_by_label("Current password").fill(PASSWORD)
    password.get_by_label("New password (at least 10 characters)").fill("a brand new passphrase")
    password.get_by_role("button", name="Change password").click()
    expect(here.get_by_text("Password changed.")).to_be_visible()

    elsewhere.goto("/dashboard/inbox")
    expect(elsewhere).to_have_url(re.compile(r"/login\?next=(/|%2F)dashboard(/|%2F)inbox$"))
    expect(elsewhere.get_by_role("button", name="Log in")).to_be_visible()

    here.goto("/dashboard/inbox")
    expect(here).to_have_url(re.compile(r"/dashboard/inbox$"))
    expect(here.get_by_role("button", name="Log out", exact=True)).to_be_visible()


def test_a_form_error_comes_back_inline_without_reload_or_csp_violations(page):
    csp = watch_csp(page)
    page.goto("/signup")
    page.evaluate("window.__sameDocument = true")  # a full reload would drop this
    page.get_by_label("Your name", exact=True).fill("Shorty")
    page.get_by_label("E-mail", exact=True).fill(unique_email("short"))
    field = page.get_by_label("Password (at least 10 characters)", exact=True)
    field.fill("too short")
    with page.expect_response(lambda r: r.url.endswith("/signup") and r.request.method == "POST") as answer:
        submit_swap(page, "#signup-form", "Create account")
    assert answer.value.status == 422
    assert answer.value.request.headers.get("hx-request") == "true"

    error = page.locator("#password-error")
    expect(error).to_have_text("Use at least 10 characters.")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", re.compile(r"\bpassword-error\b"))
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    assert csp == [], csp


def test_plain_html_forms_work_without_javascript(new_context, live_server):
    page = new_context(java_script_enabled=False).new_page()
    email = unique_email("nojs")
    sign_up(page, "Nora Noscript", email)
    page.goto(link_in(live_server.wait_for_mail(email, "Confirm your e-mail")))
    expect(page.locator("#flash")).to_contain_text("confirmed")

    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/inbox$"))
    expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()
