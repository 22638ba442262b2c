"""Automations in the browser: staff set one up for a customer from the flow's generated form,
test-run it dry, the customer runs it for real through the worker, and sees the staff's visits
in the access log. Every page is axe-clean and nothing breaks the CSP."""

import secrets
import subprocess

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import BIN, ROOT, STARTUP_SECONDS, log_in, unique_email, watch_csp
from tests.mailcatcher import text_of

# How long a page may wait for a run to go through the worker and the page's next refresh
# (every 2 s): a deadline for a busy machine, not a speed requirement.
RUN_WAIT_MS = 30_000


def grant_staff(live_server, email: str) -> None:
    done = subprocess.run([str(BIN / "flask"), "--app", "app", "grant-staff", email], cwd=ROOT,
                          env=live_server.env, capture_output=True, text=True,
                          timeout=STARTUP_SECONDS, check=False)
    assert done.returncode == 0, done.stderr


def test_staff_set_up_an_automation_and_the_customer_runs_it(live_server, verified_user,
                                                             new_context):
    shop = f"Carla {secrets.token_hex(3)}"
    customer = verified_user("customer", name=shop)
    staff_email = verified_user("staff", name="Ada Staff")
    grant_staff(live_server, staff_email)
    recipient = unique_email("leads")

    staff = new_context().new_page()
    csp = watch_csp(staff)
    log_in(staff, staff_email)
    staff.goto("/staff/")
    staff.get_by_label("Workspace name").fill(shop)
    staff.get_by_role("button", name="Find").click()
    staff.get_by_role("link", name=f"{shop}'s workspace").click()
    expect(staff.get_by_role("heading", level=1)).to_have_text(f"{shop}'s workspace: automations")
    staff.get_by_role("link", name="New automation").click()
    staff.get_by_role("link", name="E-mail", exact=True).click()

    form = staff.locator("#automation-form")
    form.get_by_label("Name").fill("Daily lead digest")
    form.get_by_label("Trigger").select_option("schedule")
    form.get_by_label("Schedule (cron expression").fill("every morning")
    form.get_by_label("To", exact=True).fill(recipient)
    form.get_by_label("Subject").fill("Leads for {{ now[:10] }}")
    form.get_by_label("Text").fill("Hello from {{ automation.name }}")
    form.get_by_role("button", name="Create automation").click()
    # Refused beside the field, the typed values kept, and the page still accessible.
    expect(form.get_by_text("Not a valid schedule")).to_be_visible()
    expect(form.get_by_label("Name")).to_have_value("Daily lead digest")
    assert_accessible(staff)

    form.get_by_label("Trigger").select_option("manual")
    form.get_by_label("Schedule (cron expression").fill("")
    form.get_by_role("button", name="Create automation").click()
    expect(staff.get_by_role("heading", level=1)).to_contain_text("Daily lead digest")
    assert_accessible(staff)

    # A dry run goes through the real worker and sends nothing.
    expect(staff.get_by_label("Dry run: log what would be sent, send nothing")).to_be_checked()
    staff.get_by_role("button", name="Run it now").click()
    expect(staff.locator("#run-status")).to_contain_text("succeeded", timeout=RUN_WAIT_MS)
    expect(staff.locator("#run-status")).to_contain_text("dry run")
    expect(staff.locator("pre.log")).to_contain_text(recipient)
    assert_accessible(staff)
    assert not live_server.smtp.to(recipient)

    # The customer sees it, runs it for real, and finds the staff visits in the access log.
    page = new_context().new_page()
    csp += watch_csp(page)
    log_in(page, customer)
    page.get_by_role("link", name="Automations").click()
    row = page.get_by_role("row", name="Daily lead digest")
    expect(row).to_contain_text("E-mail")
    expect(row).to_contain_text("Active")
    expect(page.get_by_role("img", name="Runs per day over the last 30 days")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Daily lead digest").click()
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=RUN_WAIT_MS)
    assert_accessible(page)
    mail = live_server.wait_for_mail(recipient, "Leads for", timeout=RUN_WAIT_MS / 1000)
    assert "Hello from Daily lead digest" in text_of(mail)

    page.get_by_role("link", name="Access log").click()
    expect(page.get_by_role("cell", name="created automation 'Daily lead digest'")).to_be_visible()
    expect(page.get_by_role("cell", name=staff_email).first).to_be_visible()
    assert_accessible(page)
    assert csp == []
