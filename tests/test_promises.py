"""The promise ledger: one test per promise of the privacy policy that the product makes true,
named after the promise. Each drives the product as its users do and then looks at what was
kept, down to the bytes of the database file where that is what the promise is about."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from app.accounts.models import Workspace
from app.billing import service as billing
from app.billing.models import BillingAccount, Invoice, StripeEvent
from app.db import connection, database, dialect, utcnow
from app.move_database import product_models
from tests.billing_fixtures import billing_config, double_fixture, send, upgrade  # noqa: F401
from tests.chat_fixtures import ws_fixture  # noqa: F401

CARD_NUMBER = "4242424242424242"
# What a card looks like in Stripe's payment-method objects: none of it may be kept.
CARD_WORDS = ("last4", "exp_month", "exp_year", "cvc", "fingerprint", '"brand"', "4242")


@pytest.fixture
def app_config(app_config, double):
    return {**app_config, **billing_config(double)}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def card_like(text: str) -> list[str]:
    """Runs of 13 to 19 digits (spaces or dashes between allowed) that pass the Luhn check."""
    found = []
    for match in re.finditer(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)", text):
        digits = re.sub(r"\D", "", match.group())
        if luhn_valid(digits):
            found.append(digits)
    return found


def every_row_as_text() -> str:
    lines = []
    for model in product_models():
        for row in model.select().dicts():
            lines.append(json.dumps(row, default=str))
    return "\n".join(lines)


def full_billing_flow(auth, double):
    """Upgrade, pay, fail a payment, change the address, and a payment method attached with
    its card's details (an event type we do not apply): what Stripe would send us."""
    subscription = upgrade(auth, double, auth)
    assert send(auth, double, double.pay_invoice(subscription, amount=2900, tax=609)).status_code == 200
    assert send(auth, double, double.pay_invoice(subscription, paid=False)).status_code == 200
    [customer] = double.customers.values()
    assert send(auth, double, double.update_customer(
        customer["id"], name="Shop SRL", address={"line1": "9 Str. Lunga", "country": "RO"})).status_code == 200
    card = {"id": "pm_1", "object": "payment_method", "type": "card", "customer": customer["id"],
            "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2031,
                     "fingerprint": "Xt5EWLLDS7FJjR1c", "number": CARD_NUMBER, "cvc": "123"},
            "billing_details": {"name": "Olive Owner"}}
    assert send(auth, double, double.event("payment_method.attached", card)).status_code == 200


def test_no_payment_card_details_are_stored(app, auth, ws, double):
    full_billing_flow(auth, double)
    with connection():
        assert Invoice.select().count() == 2 and BillingAccount.select().count() == 1
        assert StripeEvent.select().where(StripeEvent.type == "payment_method.attached").get().payload == ""
        rows = every_row_as_text()
        assert card_like(rows) == []
        assert [w for w in CARD_WORDS if w in rows] == []
        if dialect() == "sqlite":
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    if dialect() == "sqlite":  # every byte of the file, free pages included
        raw = Path(app.config["DATABASE"]).read_bytes().decode("latin-1")
        assert card_like(raw) == [] and CARD_NUMBER not in raw and "last4" not in raw


def test_billing_details_reach_the_payment_processor_and_nothing_more(app, auth, ws, double):
    """We share with Stripe only what paying needs: the owner's e-mail, the workspace's name
    and id, the plan. The card is typed on Stripe's page, never on ours."""
    full_billing_flow(auth, double)
    sent = [(r.path.split("?")[0], r.body.decode()) for r in double.requests if r.method == "POST"]
    customer_posts = [body for path, body in sent if path == "/v1/customers"]
    assert len(customer_posts) == 1
    assert sorted(k.split("[")[0] for k, _ in (p.split("=", 1) for p in customer_posts[0].split("&"))) == [
        "email", "metadata", "name"]
    assert {path for path, _ in sent} <= {"/v1/customers", "/v1/checkout/sessions"}
    page = auth.get("/dashboard/billing").get_data(as_text=True)
    assert not re.search(r'name="(card|cardnumber|cc-number|cvc|exp)', page)
    assert 'autocomplete="cc-' not in page


def test_invoices_are_kept_after_the_workspace_is_deleted_for_the_legal_period(app, auth, ws, double):
    full_billing_flow(auth, double)
    with app.test_request_context(), connection():
        Workspace.get_by_id(ws).delete_instance(recursive=False)
        assert Workspace.get_or_none(Workspace.id == ws) is None
        assert Invoice.select().where(Invoice.workspace_id == ws).count() == 2
        assert BillingAccount.select().where(BillingAccount.workspace_id == ws).count() == 1
        # Within the retention period (10 years) nothing goes; past it, the records go.
        assert billing.purge_expired_records(utcnow() + timedelta(days=365 * 9)) == 0
        assert Invoice.select().count() == 2
        assert billing.purge_expired_records(utcnow() + timedelta(days=365 * 10 + 5)) == 2
        assert Invoice.select().count() == 0
        assert BillingAccount.select().count() == 0


def test_account_holders_are_alerted_to_new_sign_ins_credential_changes_and_staff_access(app, client, ws):
    from app.accounts import alerts
    from app.mail.models import OutboundEmail
    from tests.conftest import PASSWORD, Client, staff_client

    def sign_in(user_agent):
        answer = Client(app.test_client()).post_form(
            "/login", {"email": "owner@example.com", "password": PASSWORD}, headers={"User-Agent": user_agent})
        assert answer.status_code == 303

    sign_in("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
    sign_in("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1")
    owner = Client(app.test_client())
    owner.post_form("/login", {"email": "owner@example.com", "password": PASSWORD},
                    headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"})
    owner.post_form("/dashboard/credentials", {"platform": "Shopify", "label": "Shop", "kind": "api_token",
                                               "secret": "shpat_0123456789abcdef"})
    staff_client(app).get(f"/staff/workspaces/{ws}")
    with app.test_request_context(), connection():
        alerts.send_access_digests()
        subjects = [m.subject for m in OutboundEmail.select().where(OutboundEmail.to == "owner@example.com")]
    assert "New sign-in to your Lumnar account" in subjects
    assert "A credential was added in your Lumnar workspace" in subjects
    assert "Lumnar staff accessed your workspace" in subjects
