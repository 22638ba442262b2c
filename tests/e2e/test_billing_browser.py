"""Billing in Chromium against a server of its own with Stripe configured (the loopback Stripe
double): a Free workspace meets its site limit, the owner upgrades through Checkout, Stripe's
signed events reach the webhook, the real worker applies them, and the new limits hold."""

import pytest
from playwright.sync_api import expect

from app.billing import plans
from tests.billing_fixtures import WEBHOOK
from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import PASSWORD, HttpUser, LiveServer, confirmed_user_over_http, wait_until
from tests.mailcatcher import MailCatcher
from tests.stripe_double import StripeDouble


@pytest.fixture(scope="module")
def billing_server(tmp_path_factory):
    """A live server (web + Huey consumer) whose Stripe is the double: limits are enforced
    here, unlike on the session's shared server, whose other tests add sites freely."""
    with StripeDouble() as double:
        env = {"STRIPE_SECRET_KEY": double.api_key, "STRIPE_WEBHOOK_SECRET": double.webhook_secret,
               "LUMNAR_STRIPE_API_BASE": double.url("").rstrip("/")}
        for plan in plans.FOR_SALE:
            for interval in plans.INTERVALS:
                price = double.add_price(plans.lookup_key(plan, interval), plans.cents(plan, interval),
                                         interval, product_name=f"Lumnar {plan.name}")
                env[plans.price_setting(plan, interval)] = price["id"]
        smtp = MailCatcher().start()
        server = LiveServer(tmp_path_factory.mktemp("lumnar-billing"), smtp, env)
        try:
            yield server.boot().wait_ready(), double
        finally:
            server.stop()
            smtp.stop()


def add_site(page, url: str, name: str) -> None:
    page.goto(url + "/dashboard/sites")
    page.get_by_label("Site name").fill(name)
    page.get_by_label("Allowed origins (one a line, like https://shop.example.com)").fill("https://shop.example.com")
    page.get_by_role("button", name="Save site").click()


def test_a_free_owner_meets_the_site_limit_upgrades_through_checkout_and_gets_pros_limits(
        page, billing_server):
    server, double = billing_server
    email = confirmed_user_over_http(server, "payer")
    with HttpUser(server.url) as http:
        http.log_in(email)
        http.create_site("First shop", ["https://first.example.com"])

    page.goto(server.url + "/login")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard/inbox")

    # Over the Free plan's one site: refused beside the form, with the way to upgrade.
    add_site(page, server.url, "Second shop")
    refusal = page.locator("#site-form .alert-error")
    expect(refusal).to_contain_text("The Free plan allows 1 site")
    assert_accessible(page)
    refusal.get_by_role("link", name="See plans and upgrade").click()
    page.wait_for_url("**/dashboard/billing")
    expect(page.get_by_role("heading", name="Your plan: Free")).to_be_visible()
    assert_accessible(page)

    # Upgrade: off to Stripe's Checkout (the double's page).
    page.get_by_role("button", name="Upgrade").click()
    page.wait_for_url(double.url("/c/pay/") + "**")
    session_id = page.url.rsplit("/", 1)[1]
    assert double.sessions[session_id]["client_reference_id"].isdigit()

    # Stripe confirms: signed events to the webhook; the worker applies them.
    for event in double.complete_checkout(session_id, name="Payer Ltd",
                                          address={"line1": "1 Quay", "city": "Cork", "country": "IE"}):
        assert double.deliver(event, server.url + WEBHOOK) == 200
    page.goto(server.url + "/dashboard/billing/done")
    expect(page.get_by_text("as soon as Stripe confirms")).to_be_visible()

    def shows_pro() -> bool:
        page.goto(server.url + "/dashboard/billing")
        return page.get_by_role("heading", name="Your plan: Pro").count() == 1

    wait_until(shows_pro, 15, "the billing page to show the Pro plan")
    expect(page.locator("#usage-sites")).to_contain_text("5")
    assert_accessible(page)

    # The new limits apply: the second site is added.
    add_site(page, server.url, "Second shop")
    page.wait_for_url("**/dashboard/sites/*")
    expect(page.get_by_role("heading", name="Second shop")).to_be_visible()


def test_the_pricing_page_shows_every_plan_and_passes_axe(page, billing_server):
    server, _ = billing_server
    page.goto(server.url + "/pricing")
    for plan in (plans.FREE, plans.PRO, plans.BUSINESS):
        expect(page.get_by_role("heading", name=plan.name, exact=True)).to_be_visible()
    assert_accessible(page)
