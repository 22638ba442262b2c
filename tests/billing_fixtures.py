"""The billing tests' set-up: a loopback Stripe double with the plans' prices, an app that
talks to it, and helpers that play Stripe's part (signed webhook events) through the app."""

import pytest

from app.billing import plans
from app.db import connection
from tests.stripe_double import StripeDouble

WEBHOOK = "/billing/webhook"


@pytest.fixture(name="double")
def double_fixture():
    with StripeDouble() as stripe_double:
        for plan in plans.FOR_SALE:
            for interval in plans.INTERVALS:
                stripe_double.add_price(plans.lookup_key(plan, interval), plans.cents(plan, interval),
                                        interval, product_name=f"Lumnar {plan.name}")
        yield stripe_double


def billing_config(double, **extra) -> dict:
    """What an installation with Stripe configured sets (the price ids by lookup key)."""
    by_key = {price["lookup_key"]: price["id"] for price in double.prices.values()}
    return {
        "STRIPE_SECRET_KEY": double.api_key,
        "STRIPE_WEBHOOK_SECRET": double.webhook_secret,
        "STRIPE_API_BASE": double.url("").rstrip("/"),
        "STRIPE_PRICES": {(p.key, i): by_key[plans.lookup_key(p, i)]
                          for p in plans.FOR_SALE for i in plans.INTERVALS},
        "STRIPE_TIMEOUT": 2,
        "STRIPE_RETRIES": 0,
        **extra,
    }


def send(client, double, event, **signing):
    """Deliver one event to the app's webhook as Stripe does: the raw JSON, signed."""
    body, headers = double.signed(event, **signing)
    return client.post(WEBHOOK, data=body, headers=headers)


def workspace_of(app, workspace_id):
    from app.accounts.models import Workspace

    with app.app_context(), connection():
        return Workspace.get_by_id(workspace_id)


def upgrade(client, double, auth_client, plan="pro", interval="month") -> str:
    """The owner clicks Upgrade, Stripe's checkout completes, Stripe's events arrive: the
    subscription's id."""
    answer = auth_client.post_form("/dashboard/billing/checkout", {"plan": plan, "interval": interval})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    session_id = answer.headers["Location"].rsplit("/", 1)[1]
    events = double.complete_checkout(session_id, name="Olive Owner",
                                      address={"line1": "1 Rue du Port", "city": "Brest",
                                               "postal_code": "29200", "country": "FR"})
    for event in events:
        assert send(client, double, event).status_code == 200
    return double.sessions[session_id]["subscription"]
