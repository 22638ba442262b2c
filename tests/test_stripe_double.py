"""The Stripe double (tests/stripe_double.py) answers the real `stripe` library as Stripe does:
its shapes, its refusals, its idempotency, its webhook signatures and its failures."""

import json
import time
import urllib.error
import urllib.request

import pytest
import stripe

from tests.loopback import Recorder
from tests.stripe_double import StripeDouble, period_end


@pytest.fixture
def double():
    with StripeDouble() as server:
        yield server


@pytest.fixture
def client(double):
    return double.client()


@pytest.fixture
def monthly(double):
    return double.add_price("pro_monthly", 1900, "month")


def checkout(client, price_id, customer=None, **extra):
    params = {"mode": "subscription", "success_url": "https://app.example/billing/done",
              "cancel_url": "https://app.example/billing", "customer": customer,
              "line_items": [{"price": price_id, "quantity": 1}],
              "client_reference_id": "ws-42", "automatic_tax": {"enabled": False},
              "subscription_data": {"metadata": {"workspace_id": "42"}}, **extra}
    return client.v1.checkout.sessions.create(params=params)


def refusal(call) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call()
    return caught.value


def get(url, key=None) -> tuple[int, str]:
    """A plain GET, as a browser (or, with `key`, an API client) would make it."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def test_a_customer_is_created_and_read_back_in_stripes_shape(double, client):
    made = client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada", "metadata": {"workspace_id": "42"}},
        options={"idempotency_key": "cus-ws-42"})
    assert made.id.startswith("cus_") and made.object == "customer"
    again = client.v1.customers.retrieve(made.id)
    assert (again.email, again.metadata["workspace_id"], again.address) == (
        "ada@example.com", "42", None)
    posted = double.requests[0]
    assert posted.headers["Authorization"] == "Bearer sk_test_double"
    assert posted.headers["Idempotency-Key"] == "cus-ws-42"
    assert posted.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_an_unknown_customer_is_a_404_resource_missing(client):
    error = refusal(lambda: client.v1.customers.retrieve("cus_nope"))
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "id")


def test_a_wrong_api_key_is_refused_with_401(double):
    with pytest.raises(stripe.AuthenticationError) as caught:
        double.client(api_key="sk_test_wrong").v1.customers.create(params={"email": "a@b.co"})
    assert caught.value.http_status == 401 and double.customers == {}


def test_prices_are_made_and_found_by_lookup_key(double, client, monthly):
    product = client.v1.products.create(params={"name": "Lumnar Team"})
    yearly = client.v1.prices.create(params={
        "product": product.id, "currency": "eur", "unit_amount": 19000,
        "recurring": {"interval": "year"}, "lookup_key": "pro_yearly", "nickname": "Yearly"})
    assert yearly.id.startswith("price_") and yearly.recurring.interval == "year"
    found = client.v1.prices.list(params={"lookup_keys": ["pro_monthly", "pro_yearly"]})
    assert found.object == "list" and found.url == "/v1/prices" and not found.has_more
    assert {p.lookup_key for p in found.data} == {"pro_monthly", "pro_yearly"}
    assert client.v1.prices.retrieve(monthly["id"]).unit_amount == 1900
    # Stripe's own docs write lists as `lookup_keys[]=`; stripe-python as `lookup_keys[0]=`.
    status, body = get(double.url("/v1/prices?lookup_keys[]=pro_yearly"), "sk_test_double")
    assert status == 200 and [p["id"] for p in json.loads(body)["data"]] == [yearly.id]


def test_a_lookup_key_is_unique_unless_transferred(double, client, monthly):
    params = {"product": monthly["product"], "currency": "eur", "unit_amount": 2100,
              "recurring": {"interval": "month"}, "lookup_key": "pro_monthly"}
    assert refusal(lambda: client.v1.prices.create(params=params)).param == "lookup_key"
    moved = client.v1.prices.create(params={**params, "transfer_lookup_key": True})
    assert double.prices[monthly["id"]]["lookup_key"] is None
    found = client.v1.prices.list(params={"lookup_keys": ["pro_monthly"]})
    assert [p.id for p in found.data] == [moved.id]


@pytest.mark.parametrize("change, param", [
    ({"product": "prod_nope"}, "product"),
    ({"currency": None}, "currency"),
    ({"unit_amount": -1}, "unit_amount"),
    ({"unit_amount": "12.5"}, "unit_amount"),
    ({"recurring": {"interval": "fortnight"}}, "recurring[interval]"),
    ({"colour": "blue"}, "colour"),
])
def test_a_price_stripe_would_refuse_is_refused_naming_the_param(client, monthly, change,
                                                                   param):
    params = {"product": monthly["product"], "currency": "eur", "unit_amount": 500,
              "recurring": {"interval": "month"}, **change}
    error = refusal(lambda: client.v1.prices.create(params=params))
    assert (error.http_status, error.param) == (400, param)


def test_a_checkout_session_has_stripes_shape_and_a_page_to_land_on(double, client, monthly):
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    session = checkout(client, monthly["id"], customer.id, billing_address_collection="required")
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert (session.status, session.subscription, session.mode, session.customer,
            session.client_reference_id) == ("open", None, "subscription", customer.id, "ws-42")
    assert session.automatic_tax.enabled is False and session.amount_total == 1900
    assert session.url == double.url(f"/c/pay/{session.id}")
    status, page = get(session.url)
    assert status == 200 and "Stripe Checkout (test double)" in page
    assert get(double.url("/c/pay/cs_test_nope"))[0] == 404


def test_a_checkout_for_an_unknown_price_is_refused_naming_the_param(client):
    error = refusal(lambda: checkout(client, "price_nope"))
    assert (error.http_status, error.code, error.param) == (
        400, "resource_missing", "line_items[0][price]")


@pytest.mark.parametrize("change, param", [
    ({"mode": None}, "mode"),
    ({"mode": "subscribe"}, "mode"),
    ({"success_url": None}, "success_url"),
    ({"success_url": "/billing/done"}, "success_url"),
    ({"customer": "cus_nope"}, "customer"),
    ({"client_reference_id": "x" * 201}, "client_reference_id"),
    ({"billing_address_collection": "always"}, "billing_address_collection"),
    ({"automatic_tax": {"enabled": "yes"}}, "automatic_tax[enabled]"),
    ({"line_items": "without a quantity"}, "line_items[0][quantity]"),
    ({"line_items": None}, "line_items"),
    ({"mode": "payment", "subscription_data": None}, "line_items[0][price]"),
    ({"mode": "payment"}, "subscription_data"),
    ({"customer_emial": "a@b.co"}, "customer_emial"),
])
def test_a_checkout_stripe_would_refuse_is_refused_naming_the_param(double, client, monthly,
                                                                      change, param):
    if change.get("line_items") == "without a quantity":
        change = {"line_items": [{"price": monthly["id"]}]}
    error = refusal(lambda: checkout(client, monthly["id"], **change))
    assert (error.http_status, error.param) == (400, param)
    assert double.sessions == {}


def test_a_subscription_checkout_needs_a_recurring_price(double, client):
    once = double.add_price("setup_fee", 5000, None)
    error = refusal(lambda: checkout(client, once["id"]))
    assert error.param == "line_items[0][price]" and "recurring" in error.user_message


def test_a_reused_idempotency_key_replays_and_with_other_params_is_refused(double, client):
    options = {"idempotency_key": "signup-ws-42"}
    first = client.v1.customers.create(params={"email": "ada@example.com"}, options=options)
    again = client.v1.customers.create(params={"email": "ada@example.com"}, options=options)
    assert again.id == first.id and len(double.customers) == 1
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "bob@example.com"}, options=options)
    assert len(double.customers) == 1


def test_a_signed_event_verifies_with_stripes_own_check(double, client, monthly):
    event = double.event("customer.updated", {"id": "cus_1", "object": "customer"})
    body, headers = double.signed(event)
    header = headers["Stripe-Signature"]
    assert stripe.Webhook.construct_event(body, header, "whsec_test_double").id == event["id"]
    assert client.construct_event(body, header, "whsec_test_double").type == "customer.updated"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_other")
    stale = double.sign(body, timestamp=time.time() - 301)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, stale, "whsec_test_double")
    fresh_enough = double.sign(body, timestamp=time.time() - 290)
    assert stripe.Webhook.construct_event(body, fresh_enough, "whsec_test_double")


def test_completing_a_checkout_starts_an_active_subscription_with_its_period_on_the_item(
        double, client, monthly):
    session = checkout(client, monthly["id"])
    completed, created = double.complete_checkout(
        session.id, address={"country": "FR", "postal_code": "75011"}, name="Ada SARL")
    assert (completed["type"], created["type"]) == (
        "checkout.session.completed", "customer.subscription.created")
    assert completed["created"] < created["created"]
    done = completed["data"]["object"]
    assert done["status"] == "complete" and done["client_reference_id"] == "ws-42"
    assert done["subscription"] == created["data"]["object"]["id"]
    assert double.customers[done["customer"]]["address"]["country"] == "FR"
    subscription = client.v1.subscriptions.retrieve(done["subscription"])
    item = subscription["items"].data[0]
    assert (subscription.status, subscription.customer, item.price.lookup_key) == (
        "active", done["customer"], "pro_monthly")
    assert subscription.metadata["workspace_id"] == "42"
    assert item.current_period_end == period_end(item.current_period_start, "month")
    assert 28 * 86400 <= item.current_period_end - item.current_period_start <= 31 * 86400


def test_subscription_changes_send_events_with_previous_attributes(double, client, monthly):
    double.add_price("pro_yearly", 19000, "year")
    _, created = double.complete_checkout(checkout(client, monthly["id"]).id)
    sub_id = created["data"]["object"]["id"]
    changed = double.update_subscription(sub_id, price="pro_yearly", cancel_at_period_end=True)
    assert changed["type"] == "customer.subscription.updated"
    now = changed["data"]["object"]
    assert now["items"]["data"][0]["price"]["lookup_key"] == "pro_yearly"
    assert now["cancel_at"] == now["items"]["data"][0]["current_period_end"]
    previous = changed["data"]["previous_attributes"]
    assert previous["cancel_at_period_end"] is False
    assert previous["items"]["data"][0]["price"]["lookup_key"] == "pro_monthly"
    ended = double.cancel_subscription(sub_id)
    assert (ended["type"], ended["data"]["object"]["status"]) == (
        "customer.subscription.deleted", "canceled")
    assert client.v1.subscriptions.retrieve(sub_id).status == "canceled"
    assert [e["created"] for e in double.events] == sorted({e["created"] for e in double.events})


def test_invoices_are_numbered_and_a_failed_one_makes_the_subscription_past_due(double, client,
                                                                                 monthly):
    _, created = double.complete_checkout(checkout(client, monthly["id"]).id)
    sub_id = created["data"]["object"]["id"]
    paid = double.pay_invoice(sub_id, tax=380)
    invoice = paid["data"]["object"]
    assert (paid["type"], invoice["number"], invoice["status"]) == (
        "invoice.paid", "LUMN-0001", "paid")
    assert (invoice["total"], invoice["amount_paid"], invoice["total_taxes"][0]["amount"]) == (
        2280, 2280, 380)
    assert invoice["parent"]["subscription_details"]["subscription"] == sub_id
    assert "Stripe invoice (test double)" in get(invoice["hosted_invoice_url"])[1]
    failed = double.pay_invoice(sub_id, paid=False)
    assert (failed["type"], failed["data"]["object"]["number"]) == (
        "invoice.payment_failed", "LUMN-0002")
    assert failed["data"]["object"]["amount_due"] == 1900
    subscription = client.v1.subscriptions.retrieve(sub_id)
    assert (subscription.status, subscription.latest_invoice) == (
        "past_due", failed["data"]["object"]["id"])
    # The open invoice is retried, not replaced; the renewal after it moves the period on.
    retried = double.pay_invoice(sub_id)["data"]["object"]
    assert (retried["id"], retried["status"], retried["attempt_count"]) == (
        failed["data"]["object"]["id"], "paid", 2)
    assert client.v1.subscriptions.retrieve(sub_id).status == "active"
    ends = subscription["items"].data[0].current_period_end
    renewal = double.pay_invoice(sub_id)["data"]["object"]
    assert (renewal["number"], renewal["billing_reason"]) == ("LUMN-0003", "subscription_cycle")
    assert renewal["lines"]["data"][0]["period"]["start"] == ends


def test_a_portal_session_is_for_a_known_customer(double, client):
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://app.example/billing"})
    assert portal.id.startswith("bps_") and portal.object == "billing_portal.session"
    assert "Stripe customer portal (test double)" in get(portal.url)[1]
    error = refusal(lambda: client.v1.billing_portal.sessions.create(
        params={"customer": "cus_nope"}))
    assert (error.param, error.code) == ("customer", "resource_missing")
    changed = double.update_customer(customer.id, name="Ada SARL")
    assert changed["data"]["previous_attributes"] == {"name": None}


def test_an_unknown_route_answers_stripes_404(double):
    status, body = get(double.url("/v1/charges"), "sk_test_double")
    error = json.loads(body)["error"]
    assert status == 404 and error["type"] == "invalid_request_error"
    assert error["message"].startswith("Unrecognized request URL (GET: /v1/charges)")


def test_a_double_that_is_down_answers_api_error_and_fail_next_fails_once(double, client):
    double.down = True
    with pytest.raises(stripe.APIError) as caught:
        client.v1.customers.create(params={"email": "ada@example.com"})
    assert caught.value.http_status == 500
    double.down = False
    double.fail_next(402, "card_error", "Your card was declined.", code="card_declined")
    with pytest.raises(stripe.CardError):
        client.v1.customers.create(params={"email": "ada@example.com"})
    assert client.v1.customers.create(params={"email": "ada@example.com"}).id


def test_a_slow_double_times_a_client_out_and_still_stops_at_once():
    with StripeDouble() as double:
        double.delay = 30
        with pytest.raises(stripe.APIConnectionError):
            double.client(timeout=0.3).v1.customers.create(params={"email": "a@b.co"})
        started = time.monotonic()
    assert time.monotonic() - started < 2


def test_an_event_is_delivered_signed_to_a_live_webhook_url(double):
    event = double.event("invoice.paid", {"id": "in_1", "object": "invoice"})
    with Recorder(status=200) as hook:
        assert double.deliver(event, hook.url("/billing/webhook")) == 200
    got = hook.requests[0]
    assert got.headers["Content-Type"].startswith("application/json")
    verified = stripe.Webhook.construct_event(got.body, got.headers["Stripe-Signature"],
                                              "whsec_test_double")
    assert verified.id == event["id"]
    with Recorder(status=400) as refusing:
        assert double.deliver(event, refusing.url("/billing/webhook"), secret="whsec_x") == 400
