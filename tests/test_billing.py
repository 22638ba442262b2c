"""Billing: the plans' limits in every area's service, Upgrade through Stripe Checkout, Manage
billing through the Customer Portal, and Stripe's webhook events (signed, once, in any order),
all through the real `stripe` library against a loopback Stripe double."""

import json
import re
import time
from datetime import timedelta

import pytest

from app.accounts.models import Invitation, Workspace
from app.automations import service as automations
from app.automations.models import Automation
from app.billing import plans
from app.billing import service as billing
from app.billing.models import BillingAccount, Invoice, StripeEvent
from app.chat.models import Conversation, Message
from app.db import connection, utcnow
from app.mail.models import OutboundEmail
from app.widget.models import Site
from tests.billing_fixtures import billing_config, double_fixture, send, upgrade, workspace_of  # noqa: F401
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    WidgetVisitor,
    agent_fixture,
    make_site,
    online_fixture,
    ws_fixture,
)

SITE = {"name": "Corner Shop", "allowed_origins": "https://shop.example.com",
        "greeting": "Hello!", "away_message": "Out.", "accent_color": "#4338ca",
        "retention_days": "30", "launcher_label": "Chat with us", "enabled": "y"}


@pytest.fixture
def app_config(request, app_config, double):
    """Every test here runs with Stripe configured (the double), unless its config marker
    says otherwise."""
    marker = request.node.get_closest_marker("config")
    return {**app_config, **billing_config(double), **(marker.kwargs if marker else {})}


def text(response) -> str:
    return response.get_data(as_text=True)


def plain(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def new_automation(ws, name="Ping"):
    return automations.create_automation(ws, name=name, flow="http_request",
                                         config={"url": "https://example.com/hook", "method": "POST"},
                                         trigger="manual")


# --- plans and limits --------------------------------------------------------------------------------


@pytest.mark.config(STRIPE_SECRET_KEY="")
def test_without_stripe_the_demo_plan_limits_nothing_and_the_page_says_so(app, auth, ws):
    for n in range(3):
        assert auth.post_form("/dashboard/sites", {**SITE, "name": f"Shop {n}"}).status_code == 303
    page = plain(text(auth.get("/dashboard/billing")))
    assert "Billing is not configured" in page and "Demo plan" in page
    assert "Upgrade" not in page


def test_pricing_page_is_made_from_the_plan_data(client):
    page = plain(text(client.get("/pricing")))
    for plan in (plans.FREE, plans.PRO, plans.BUSINESS):
        assert plan.name in page
    assert plans.money(plans.PRO.monthly_cents) in page and plans.money(plans.BUSINESS.yearly_cents) in page
    assert "300 conversations a month" in page and "5 sites" in page


def test_a_free_workspace_cannot_add_a_second_site_and_is_offered_an_upgrade(app, auth, ws):
    assert auth.post_form("/dashboard/sites", SITE).status_code == 303
    refused = auth.post_form("/dashboard/sites", {**SITE, "name": "Second shop"}, htmx=True)
    assert refused.status_code == 402
    assert "The Free plan allows 1 site" in plain(text(refused))
    assert 'href="/dashboard/billing"' in text(refused)
    with connection():
        assert [s.name for s in Site.select().where(Site.workspace == ws)] == ["Corner Shop"]


def test_members_and_pending_invitations_count_against_the_plans_team(app, auth, ws, smtp):
    invite = lambda email: auth.post_form("/dashboard/team/invitations",  # noqa: E731
                                          {"email": email, "role": "agent"}, htmx=True)
    assert invite("first@example.com").status_code in (200, 303)  # owner + 1 = the Free plan's 2
    assert invite("first@example.com").status_code in (200, 303)  # a new invitation replaces it
    refused = invite("second@example.com")
    assert refused.status_code == 402
    assert "team members" in plain(text(refused))
    with connection():
        pending = Invitation.select().where((Invitation.workspace == ws)
                                            & Invitation.revoked_at.is_null())
        assert [i.email for i in pending] == ["first@example.com"]


def test_an_automation_cannot_be_active_beyond_the_plan(app, ws):
    with app.test_request_context(), connection():
        with pytest.raises(billing.PlanLimit, match="includes no active automations"):
            new_automation(ws)
        assert Automation.select().count() == 0
        billing.apply_plan(ws, plans.PRO, "active")
        made = [new_automation(ws, f"Flow {n}") for n in range(3)]
        with pytest.raises(billing.PlanLimit, match="allows 3 active automations"):
            new_automation(ws, "Fourth")
        automations.pause(made[0])
        automations.resume(made[0])  # back within the limit: allowed
        automations.pause(made[0])
        new_automation(ws, "Fourth")
        with pytest.raises(billing.PlanLimit):
            automations.resume(made[0])  # the fourth took its place


def test_staff_see_the_plans_allowance_in_the_automation_form(app, ws):
    from tests.conftest import staff_client

    staff = staff_client(app)
    page = plain(text(staff.get(f"/staff/workspaces/{ws}/automations/new?flow=http_request")))
    assert "Free plan: 0 active automations of 0 allowed." in page
    assert "cannot be active" in page


def test_conversations_past_the_months_limit_are_kept_and_flagged(app, auth, ws, online):
    site = make_site(app, ws)
    with connection():
        Workspace.update(conversation_limit=2).where(Workspace.id == ws).execute()
    guests = [WidgetVisitor.arrive(app, site.site_key) for _ in range(3)]
    for n, guest in enumerate(guests):
        assert guest.send(f"hello {n}").status_code == 200
    assert guests[2].send("still there?").status_code == 200  # a visitor is never refused
    with connection():
        flags = [c.over_limit for c in Conversation.select().order_by(Conversation.id)]
        assert flags == [False, False, True]
        assert [m.over_limit for m in Message.select().order_by(Message.id)] == [False, False, True, True]
        assert Workspace.get_by_id(ws).month_conversations == 3
    assert "over plan limit" in text(auth.get("/dashboard/inbox"))
    # A new month starts the count again.
    with connection():
        Workspace.update(usage_month="2000-01").where(Workspace.id == ws).execute()
    newcomer = WidgetVisitor.arrive(app, site.site_key)
    assert newcomer.send("new month").status_code == 200
    with connection():
        assert Conversation.select().order_by(Conversation.id.desc()).get().over_limit is False
        assert Workspace.get_by_id(ws).month_conversations == 1


def test_later_messages_of_a_conversation_are_not_counted(app, ws, online):
    site = make_site(app, ws)
    guest = WidgetVisitor.arrive(app, site.site_key)
    for body in ("one", "two", "three"):
        assert guest.send(body).status_code == 200
    with connection():
        assert Workspace.get_by_id(ws).month_conversations == 1


# --- paying ------------------------------------------------------------------------------------------


def test_upgrade_sends_the_owner_to_checkout_with_one_reused_customer(app, auth, ws, double):
    first = auth.post_form("/dashboard/billing/checkout", {"plan": "pro", "interval": "year"})
    assert first.status_code == 303
    assert first.headers["Location"].startswith(double.url("/c/pay/"))
    second = auth.post_form("/dashboard/billing/checkout", {"plan": "business", "interval": "month"})
    assert second.status_code == 303
    assert len(double.customers) == 1  # made once, reused
    [customer] = double.customers.values()
    sessions = list(double.sessions.values())
    assert {s["customer"] for s in sessions} == {customer["id"]}
    assert {s["client_reference_id"] for s in sessions} == {str(ws)}
    assert all(s["mode"] == "subscription" and s["billing_address_collection"] == "required"
               for s in sessions)
    assert all(r.headers.get("Idempotency-Key") for r in double.requests if r.method == "POST")
    with connection():
        assert BillingAccount.get(BillingAccount.workspace_id == ws).stripe_customer_id == customer["id"]
        assert Workspace.get_by_id(ws).plan == "free"  # nothing changes before Stripe confirms


def test_the_return_pages_say_the_plan_changes_when_stripe_confirms(auth):
    assert "as soon as Stripe confirms" in plain(text(auth.get("/dashboard/billing/done")))
    assert "Nothing was charged" in plain(text(auth.get("/dashboard/billing/cancelled")))


@pytest.mark.parametrize("form, field", [
    ({"plan": "gold", "interval": "month"}, "Choose a plan from the list."),
    ({"plan": "free", "interval": "month"}, "Choose a plan from the list."),
    ({"plan": "pro", "interval": "weekly"}, "Choose monthly or yearly."),
    ({}, "Choose a plan from the list."),
])
def test_a_checkout_for_a_plan_that_is_not_for_sale_is_refused(auth, double, form, field):
    answer = auth.post_form("/dashboard/billing/checkout", form)
    assert answer.status_code == 422
    assert field in plain(text(answer))
    assert double.requests == []  # Stripe was not asked anything


def test_a_member_who_is_not_the_owner_cannot_pay_or_manage(app, ws, agent, double):
    member = agent["client"]
    assert member.post_form("/dashboard/billing/checkout", {"plan": "pro", "interval": "month"}).status_code == 403
    assert member.post_form("/dashboard/billing/portal").status_code == 403
    page = plain(text(member.get("/dashboard/billing")))
    assert "Only the workspace's owners can change its plan." in page
    assert double.requests == []


@pytest.mark.parametrize("fault", ["down", "slow", "refused"])
def test_stripe_down_slow_or_refusing_gives_a_message_and_changes_nothing(app, auth, ws, double, fault):
    if fault == "down":
        double.down = True
    elif fault == "slow":
        double.delay = 3  # past the client's 2 s timeout
    else:
        double.fail_next(400, "invalid_request_error", "No such customer", code="resource_missing")
    started = time.monotonic()
    answer = auth.post_form("/dashboard/billing/checkout", {"plan": "pro", "interval": "month"})
    assert answer.status_code == 503
    assert "nothing was changed" in plain(text(answer))
    assert time.monotonic() - started < 10
    with connection():
        account = BillingAccount.get_or_none(BillingAccount.workspace_id == ws)
        assert account is None or account.stripe_customer_id == ""
        assert Workspace.get_by_id(ws).plan == "free"


def test_manage_billing_opens_the_customer_portal_for_the_workspaces_customer(app, auth, ws, double):
    assert auth.post_form("/dashboard/billing/portal").status_code == 409  # nothing to manage yet
    upgrade(auth, double, auth)
    answer = auth.post_form("/dashboard/billing/portal")
    assert answer.status_code == 303
    [portal] = double.portal_sessions.values()
    assert answer.headers["Location"] == portal["url"]
    with connection():
        assert portal["customer"] == BillingAccount.get(BillingAccount.workspace_id == ws).stripe_customer_id
    assert portal["return_url"].endswith("/dashboard/billing")


# --- webhooks ----------------------------------------------------------------------------------------


def test_signed_checkout_events_put_the_workspace_on_pro_and_lift_its_limits(app, auth, ws, double):
    assert auth.post_form("/dashboard/sites", SITE).status_code == 303
    upgrade(auth, double, auth, "pro", "year")
    with connection():
        workspace = Workspace.get_by_id(ws)
        assert (workspace.plan, workspace.plan_status, workspace.conversation_limit) == ("pro", "active", None)
        account = BillingAccount.get(BillingAccount.workspace_id == ws)
        assert (account.plan, account.interval, account.subscription_status) == ("pro", "year", "active")
        assert account.current_period_end > utcnow() + timedelta(days=300)
        assert (account.name, account.country) == ("Olive Owner", "FR")
        assert json.loads(account.address)["city"] == "Brest"
    assert auth.post_form("/dashboard/sites", {**SITE, "name": "Second shop"}).status_code == 303
    page = plain(text(auth.get("/dashboard/billing")))
    assert "Your plan: Pro" in page and "Manage billing" in page


def test_a_duplicate_delivery_is_acknowledged_and_applied_once(app, auth, ws, double):
    subscription = upgrade(auth, double, auth)
    paid = double.pay_invoice(subscription, amount=2900, tax=551)
    assert send(auth, double, paid).status_code == 200
    assert send(auth, double, paid).status_code == 200
    with connection():
        assert StripeEvent.select().where(StripeEvent.stripe_id == paid["id"]).count() == 1
        [invoice] = Invoice.select()
        # The amount charged, tax included, and the tax in it (Stripe's total and total_taxes).
        assert (invoice.workspace_id, invoice.amount_cents, invoice.tax_cents, invoice.status) == (ws, 3451, 551, "paid")
        assert invoice.number and invoice.hosted_url.startswith(double.url("/i/"))
    page = plain(text(auth.get("/dashboard/billing")))
    assert invoice.number in page and "€34.51" in page and "€5.51" in page and "Paid" in page


@pytest.mark.parametrize("how", ["wrong secret", "301 s old", "no signature", "malformed JSON",
                                 "signature of another body"])
def test_a_webhook_that_fails_its_check_is_refused_with_400_and_nothing_kept(app, client, ws, double,
                                                                            how, caplog):
    event = double.event("invoice.paid", {"id": "in_x", "object": "invoice", "customer": "cus_x"})
    body, headers = double.signed(event)
    if how == "wrong secret":
        body, headers = double.signed(event, secret="whsec_someone_else")
    elif how == "301 s old":
        body, headers = double.signed(event, timestamp=int(time.time()) - 301)
    elif how == "no signature":
        headers = {"Content-Type": "application/json"}
    elif how == "malformed JSON":
        body = b'{"id": "evt_1", "type": '
        headers = {"Content-Type": "application/json", "Stripe-Signature": double.sign(body)}
    else:
        headers["Stripe-Signature"] = double.sign(b'{"id": "evt_other"}')
    answer = client.post("/billing/webhook", data=body, headers=headers)
    assert answer.status_code == 400
    with connection():
        assert StripeEvent.select().count() == 0
    assert "in_x" not in caplog.text  # logged without the payload


def test_out_of_order_subscription_events_leave_the_newest_state(app, auth, ws, double):
    subscription = upgrade(auth, double, auth, "pro", "month")
    to_business = double.update_subscription(subscription, price="lumnar_business_month")
    back_to_pro = double.update_subscription(subscription, price="lumnar_pro_year")
    assert send(auth, double, back_to_pro).status_code == 200  # the newer arrives first
    assert send(auth, double, to_business).status_code == 200
    with connection():
        assert Workspace.get_by_id(ws).plan == "pro"
        assert BillingAccount.get(BillingAccount.workspace_id == ws).interval == "year"


def test_a_failed_payment_mails_the_owner_shows_a_banner_then_drops_to_free_after_7_days(
        app, auth, ws, double):
    subscription = upgrade(auth, double, auth, "business", "month")
    failed = double.pay_invoice(subscription, paid=False, amount=9900)
    assert send(auth, double, failed).status_code == 200
    with connection():
        assert Workspace.get_by_id(ws).plan_status == "past_due"
        mails = [m for m in OutboundEmail.select() if m.subject == "Your Lumnar payment failed"]
        assert [m.to for m in mails] == ["owner@example.com"]
    banner = plain(text(auth.get("/dashboard/inbox")))
    assert "Your last payment failed." in banner
    with app.test_request_context(), connection():
        assert billing.lapse_unpaid(utcnow() + timedelta(days=6)) == 0
        assert Workspace.get_by_id(ws).plan == "business"
        assert billing.lapse_unpaid(utcnow() + timedelta(days=7, minutes=1)) == 1
        workspace = Workspace.get_by_id(ws)
        assert (workspace.plan, workspace.conversation_limit) == ("free", 300)
    with connection():
        assert Invoice.get(Invoice.workspace_id == ws).status == "open"  # nothing was deleted


def test_a_cancelled_subscription_returns_the_workspace_to_free(app, auth, ws, double):
    subscription = upgrade(auth, double, auth)
    assert send(auth, double, double.update_subscription(subscription, cancel_at_period_end=True)).status_code == 200
    assert "ends on" in plain(text(auth.get("/dashboard/billing")))
    with connection():
        assert Workspace.get_by_id(ws).plan == "pro"  # until the period ends
    assert send(auth, double, double.cancel_subscription(subscription)).status_code == 200
    with connection():
        workspace = Workspace.get_by_id(ws)
        assert (workspace.plan, workspace.plan_status) == ("free", "")


def test_a_smaller_plan_pauses_the_newest_automations_and_never_touches_pause_all(app, ws):
    with app.test_request_context(), connection():
        billing.apply_plan(ws, plans.BUSINESS, "active")
        made = [new_automation(ws, f"Flow {n}") for n in range(5)]
        automations.pause(made[1])  # the customer's own pause
        automations.pause_all(ws)
        billing.apply_plan(ws, plans.PRO, "active")  # 4 active, 3 allowed
        state = {a.name: (a.paused, a.paused_for_plan) for a in Automation.select()}
        assert state == {"Flow 0": (False, False), "Flow 1": (True, False), "Flow 2": (False, False),
                         "Flow 3": (False, False), "Flow 4": (True, True)}
        assert Workspace.get_by_id(ws).automations_paused is True
        billing.apply_plan(ws, plans.BUSINESS, "active")
        state = {a.name: (a.paused, a.paused_for_plan) for a in Automation.select()}
        assert state["Flow 4"] == (False, False) and state["Flow 1"] == (True, False)
        assert Workspace.get_by_id(ws).automations_paused is True


def test_a_customer_update_keeps_the_billing_address_as_stripe_gives_it(app, auth, ws, double):
    upgrade(auth, double, auth)
    [customer] = double.customers.values()
    event = double.update_customer(customer["id"], name="Shop SRL",
                                   address={"line1": "2 Strada Mare", "city": "Cluj",
                                            "postal_code": "400000", "country": "RO"})
    assert send(auth, double, event).status_code == 200
    with connection():
        account = BillingAccount.get(BillingAccount.workspace_id == ws)
        assert (account.name, account.country) == ("Shop SRL", "RO")
        assert json.loads(account.address) == {"line1": "2 Strada Mare", "city": "Cluj",
                                               "postal_code": "400000"}


def test_staff_see_each_workspaces_plan_and_payment_state(app, auth, ws, double):
    from tests.conftest import staff_client

    upgrade(auth, double, auth)
    page = plain(text(staff_client(app).get("/staff/")))
    assert "Pro plan · payment up to date" in page


def test_billing_setup_creates_the_products_and_prices_once_and_prints_the_settings(app, double):
    double.prices.clear()  # a fresh Stripe account (but for the products the prices were on)
    products = len(double.products)
    first = app.test_cli_runner().invoke(args=["billing", "setup"])
    assert first.exit_code == 0, first.output
    settings = dict(line.split("=", 1) for line in first.output.splitlines() if "=" in line)
    assert set(settings) == {plans.price_setting(p, i) for p in plans.FOR_SALE for i in plans.INTERVALS}
    assert {double.prices[pid]["unit_amount"] for pid in settings.values()} == {
        plans.cents(p, i) for p in plans.FOR_SALE for i in plans.INTERVALS}
    again = app.test_cli_runner().invoke(args=["billing", "setup"])
    assert again.exit_code == 0 and len(double.prices) == 4
    assert len(double.products) == products + 2  # one per plan for sale, made once


@pytest.mark.config(STRIPE_SECRET_KEY="sk_live_realmoney")
def test_billing_setup_refuses_a_live_key_unless_asked(app):
    answer = app.test_cli_runner().invoke(args=["billing", "setup"])
    assert answer.exit_code != 0 and "live-mode key" in answer.output


def test_a_new_workspace_is_on_free_with_its_limit_copied(app, ws):
    workspace = workspace_of(app, ws)
    assert (workspace.plan, workspace.conversation_limit) == ("free", plans.FREE.conversations)


def test_staff_creating_an_automation_past_the_plan_see_the_refusal_and_nothing_is_saved(app, ws):
    from tests.conftest import staff_client

    staff = staff_client(app)
    answer = staff.post_form(f"/staff/workspaces/{ws}/automations", {
        "flow": "http_request", "name": "Ping", "trigger": "manual", "max_attempts": "3",
        "cfg-method": "POST", "cfg-url": "https://example.com/hook", "cfg-expected_status": "2xx",
        "cfg-auth_header": "Authorization"})
    assert answer.status_code == 402
    assert "The Free plan includes no active automations" in plain(text(answer))
    with connection():
        assert Automation.select().count() == 0


def test_a_customer_resuming_an_automation_past_the_plan_is_told_why(app, auth, ws):
    with app.test_request_context(), connection():
        billing.apply_plan(ws, plans.PRO, "active")
        made = [new_automation(ws, f"Flow {n}") for n in range(3)]
        automations.pause(made[0])
        new_automation(ws, "Fourth")
    answer = auth.post_form(f"/dashboard/automations/{made[0].id}/resume")
    assert answer.status_code == 402
    assert "allows 3 active automations" in plain(text(answer))
    with connection():
        assert Automation.get_by_id(made[0].id).paused is True
