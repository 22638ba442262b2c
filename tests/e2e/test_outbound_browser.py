"""Nothing sold or shared: every connection the web process and the worker open during a full
flow in the browser (sign up, chat both ways, upgrade through the Stripe double, an automation
run) goes to the configured SMTP server, the Stripe API, or the automation's own target."""

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import expect

from app.billing import plans
from app.policies.providers import all_hosts
from tests.billing_fixtures import WEBHOOK
from tests.e2e.conftest import (
    BIN,
    ROOT,
    STARTUP_SECONDS,
    HttpUser,
    LiveServer,
    confirmed_user_over_http,
    log_in,
    sign_up,
    snippet_page,
    unique_email,
    wait_until,
)
from tests.e2e.widget_browser import open_chat, say
from tests.loopback import Endpoint
from tests.mailcatcher import MailCatcher, link_in
from tests.stripe_double import StripeDouble

HOOK = Path(__file__).resolve().parent / "outbound"


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def connections(log: Path) -> set[tuple[str, int]]:
    if not log.exists():
        return set()
    return {(host, int(port)) for host, port, _pid in
            (line.split() for line in log.read_text().splitlines() if line.strip())}


def test_the_server_connects_only_to_smtp_stripe_and_the_automations_own_target(
        browser, tmp_path_factory, host_site):
    data_dir = tmp_path_factory.mktemp("lumnar-outbound")
    log = data_dir / "connections.log"
    endpoint = Endpoint()
    smtp = MailCatcher().start()
    with StripeDouble() as double:
        env = {"STRIPE_SECRET_KEY": double.api_key, "STRIPE_WEBHOOK_SECRET": double.webhook_secret,
               "LUMNAR_STRIPE_API_BASE": double.url("").rstrip("/"),
               "LUMNAR_TEST_CONNECTIONS_LOG": str(log), "PYTHONPATH": str(HOOK)}
        for plan in plans.FOR_SALE:
            for interval in plans.INTERVALS:
                env[plans.price_setting(plan, interval)] = double.add_price(
                    plans.lookup_key(plan, interval), plans.cents(plan, interval), interval)["id"]
        server = LiveServer(data_dir, smtp, env)
        try:
            server.boot().wait_ready()
            run_the_flow(browser, server, double, endpoint, host_site)
        finally:
            server.stop()
            smtp.stop()
            endpoint.stop()
        made = connections(log)
        # The providers the privacy page names (app/policies/providers.py), as this server
        # is configured, and the one place an automation was told to call.
        config = {"SMTP_URL": smtp.url, "STRIPE_API_BASE": env["LUMNAR_STRIPE_API_BASE"]}
        allowed = {tuple(e) for e in all_hosts(config)} | {host_port(endpoint.url)}
    # The hook saw the flow's connections (the e-mails and Stripe calls made some) ...
    assert host_port(double.url("/")) in made and host_port(endpoint.url) in made
    # ... and nothing else: no analytics, no third party, nothing sold or shared.
    assert made - allowed == set(), f"unexpected connections: {sorted(made - allowed)}"


def run_the_flow(browser, server, double, endpoint, host_site):
    ctx = browser.new_context(base_url=server.url)
    try:
        page = ctx.new_page()
        # Sign up in the browser; the confirmation goes out over SMTP.
        owner = unique_email("outbound")
        sign_up(page, "Olive Owner", owner)
        page.goto(link_in(server.wait_for_mail(owner, "Confirm your e-mail")))
        log_in(page, owner)

        # Upgrade through Checkout (the Free plan allows no automation); Stripe confirms.
        page.goto("/dashboard/billing")
        page.get_by_role("button", name="Upgrade").click()
        page.wait_for_url(double.url("/c/pay/") + "**")
        for event in double.complete_checkout(page.url.rsplit("/", 1)[1]):
            assert double.deliver(event, server.url + WEBHOOK) == 200

        def on_pro() -> bool:
            page.goto(server.url + "/dashboard/billing")
            return page.get_by_role("heading", name="Your plan: Pro").count() == 1

        wait_until(on_pro, 20, "the worker to apply Stripe's events")

        # A site, and a visitor chatting with the owner both ways.
        with HttpUser(server.url) as http:
            http.log_in(owner)
            _, key = http.create_site("Outbound shop", [host_site.origin])
            snippet = f'<script src="{server.url}/widget.js" data-site="{key}" async></script>'
            shop = host_site.add(f"/outbound-{key}.html", snippet_page(snippet, "Outbound shop"))
            visitor = ctx.browser.new_context().new_page()
            visitor.goto(shop)
            chat = open_chat(visitor)
            say(chat, "Do you ship to Oslo?")
            inbox = http.get("/dashboard/inbox").text
            conversation = re.search(r"/dashboard/conversations/(\d+)", inbox).group(1)
            url = f"/dashboard/conversations/{conversation}"
            http.post_form(url, f"{url}/messages", body="Yes, in four days.")
            expect(chat.locator("#messages > li.w-msg-agent")).to_contain_text("Yes, in four days.")
            visitor.context.close()

            # Staff set up an automation calling the customer's endpoint; the owner runs it.
            staff = confirmed_user_over_http(server, "outboundstaff", "Ada Staff")
            done = subprocess.run([str(BIN / "flask"), "--app", "app", "grant-staff", staff],
                                  cwd=ROOT, env=server.env, capture_output=True, text=True,
                                  timeout=STARTUP_SECONDS, check=False)
            assert done.returncode == 0, done.stderr
            workspace = re.search(r"ws-(\d+)", http.get("/dashboard/settings").text)
            with HttpUser(server.url) as staff_http:
                staff_http.log_in(staff)
                listing = staff_http.get("/staff/?q=Olive").text
                ws_id = workspace.group(1) if workspace else re.search(
                    r"/staff/workspaces/(\d+)", listing).group(1)
                staff_http.post_form(f"/staff/workspaces/{ws_id}/automations/new?flow=http_request",
                                     f"/staff/workspaces/{ws_id}/automations",
                                     flow="http_request", name="Ping the shop", trigger="manual",
                                     max_attempts="1", **{"cfg-method": "POST", "cfg-url": endpoint.url + "/hook",
                                                          "cfg-expected_status": "2xx",
                                                          "cfg-auth_header": "Authorization"})
                assert staff_http.last.status_code == 200, staff_http.last.text[:2000]
            automation = re.search(r"/dashboard/automations/(\d+)", http.get("/dashboard/automations").text).group(1)
            http.post_form(f"/dashboard/automations/{automation}", f"/dashboard/automations/{automation}/run")
            wait_until(lambda: endpoint.requests, 30, "the automation's request to reach its target")
    finally:
        ctx.close()
