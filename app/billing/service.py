"""Billing: what each plan allows (checked here for every area), paying through Stripe
Checkout and the Customer Portal, and Stripe's webhook events applied in the worker.

Stripe holds the card; we keep the customer and subscription ids, the billing address and
the invoices (app/billing/models.py). A plan changes when Stripe says so (a webhook event,
then the subscription read back from Stripe), never on the page a customer returns to."""

import json
import logging
from datetime import datetime, timedelta, timezone

import stripe
from flask import current_app, url_for
from peewee import IntegrityError

from app import background, insight
from app.accounts.models import Membership, User, Workspace
from app.automations import service as automations
from app.automations.models import Automation
from app.billing import plans
from app.billing.limits import PlanLimit, active_automations, agents_used, plan_of, usage  # noqa: F401
from app.billing.models import BillingAccount, Invoice, StripeEvent
from app.billing.plans import FREE, PLANS, Plan
from app.db import database, utcnow
from app.errors import RuleError
from app.mail import service as mail

log = logging.getLogger(__name__)

GRACE = timedelta(days=7)  # a failed payment keeps the paid plan this long
# Stripe's subscription states in which the plan paid for applies (past_due: during GRACE).
PAYING = {"active", "trialing", "past_due"}
STRIPE_TIMEOUT_SECONDS = 10


class BillingUnavailable(RuleError):
    """Stripe could not be reached or refused: nothing was changed on our side."""

    def __init__(self, message):
        super().__init__(message, status=503)


# --- configuration ---------------------------------------------------------------------------------


def configured() -> bool:
    return bool(current_app.config.get("STRIPE_SECRET_KEY"))


def client() -> stripe.StripeClient:
    """One client per app: its key, Stripe's address (a test double's in the tests) and a
    timeout, so a slow Stripe becomes a message instead of a hung request."""
    made = current_app.extensions.get("stripe")
    if made is None:
        config = current_app.config
        made = stripe.StripeClient(
            config["STRIPE_SECRET_KEY"],
            base_addresses={"api": config["STRIPE_API_BASE"]} if config.get("STRIPE_API_BASE") else None,
            http_client=stripe.RequestsClient(timeout=config.get("STRIPE_TIMEOUT", STRIPE_TIMEOUT_SECONDS)),
            max_network_retries=config.get("STRIPE_RETRIES", 2))
        current_app.extensions["stripe"] = made
    return made


def price_id(plan: Plan, interval: str) -> str:
    return current_app.config.get("STRIPE_PRICES", {}).get((plan.key, interval), "")


def plan_for_price(price: dict) -> tuple[Plan, str] | None:
    """The plan and interval a Stripe Price stands for: by its id in our settings, or by the
    lookup key `flask billing setup` gave it."""
    for (key, interval), configured_id in current_app.config.get("STRIPE_PRICES", {}).items():
        if configured_id and configured_id == price.get("id"):
            return PLANS[key], interval
    for plan in plans.FOR_SALE:
        for interval in plans.INTERVALS:
            if price.get("lookup_key") == plans.lookup_key(plan, interval):
                return plan, interval
    return None


def apply_plan(workspace_id: int, plan: Plan, status: str) -> None:
    """Put the workspace on `plan` (limits copied, as the chat's message path reads them)
    and fit its automations to the plan: the oldest active ones stay, the newer ones pause
    for the plan, and a larger plan resumes what a smaller one paused. The customer's own
    switches ("pause all", a pause of their own) are never touched. Inside a transaction."""
    with database.atomic():
        Workspace.update(plan=plan.key, plan_status=status,
                         conversation_limit=plan.conversations).where(
            Workspace.id == workspace_id).execute()
        active = list(Automation.select(Automation.id).where(
            (Automation.workspace == workspace_id) & (Automation.paused == False))  # noqa: E712
            .order_by(Automation.created_at, Automation.id))
        room = None if plan.automations is None else plan.automations - len(active)
        if room is not None and room < 0:
            over = [a.id for a in active[plan.automations:]]
            Automation.update(paused=True, paused_for_plan=True, next_run_at=None,
                              updated_at=utcnow()).where(Automation.id.in_(over)).execute()
        elif room is None or room > 0:
            held = Automation.select().where(
                (Automation.workspace == workspace_id) & Automation.paused_for_plan
            ).order_by(Automation.created_at, Automation.id)
            for automation in (held if room is None else held.limit(room)):
                automations.resume(automation)


# --- paying ------------------------------------------------------------------------------------------


def account_for(workspace_id: int) -> BillingAccount:
    account = BillingAccount.get_or_none(BillingAccount.workspace_id == workspace_id)
    if account is None:
        account = BillingAccount.create(workspace_id=workspace_id)
    return account


def _stripe_call(what: str, call):
    """A Stripe call whose failure becomes a message: nothing on our side was changed."""
    try:
        return call()
    except stripe.InvalidRequestError as exc:
        log.warning("Stripe refused %s: %s (param %s)", what, exc.user_message or exc, exc.param)
        raise BillingUnavailable("Stripe refused the request; nothing was changed. If it "
                                 "happens again, write to us from the contact page.") from None
    except stripe.StripeError as exc:
        log.warning("Stripe did not answer %s: %s", what, type(exc).__name__)
        raise BillingUnavailable("Stripe did not answer in time; nothing was changed. "
                                 "Try again in a minute.") from None


def _customer(workspace: Workspace, user: User) -> str:
    """The workspace's Stripe customer, created once (its idempotency key is the workspace,
    so two clicks at once still make one) and reused for every later checkout."""
    account = account_for(workspace.id)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    customer = _stripe_call("creating a customer", lambda: client().v1.customers.create(
        params={"email": user.email, "name": workspace.name,
                "metadata": {"workspace_id": str(workspace.id)}},
        options={"idempotency_key": f"lumnar-customer-{workspace.id}"}))
    BillingAccount.update(stripe_customer_id=customer["id"], updated_at=utcnow()).where(
        (BillingAccount.id == account.id) & (BillingAccount.stripe_customer_id == "")).execute()
    return BillingAccount.get_by_id(account.id).stripe_customer_id


def start_checkout(workspace: Workspace, user: User, plan_key: str, interval: str) -> str:
    """The Stripe Checkout address where the owner subscribes to `plan_key`."""
    if not configured():
        raise RuleError("Billing is not configured on this installation.", status=409)
    plan = PLANS.get(plan_key)
    if plan is None or not plan.paid:
        raise RuleError("Choose a plan from the list.", field="plan", status=422)
    if interval not in plans.INTERVALS:
        raise RuleError("Choose monthly or yearly.", field="interval", status=422)
    price = price_id(plan, interval)
    if not price:
        raise RuleError(f"The {plan.name} plan cannot be bought {plans.INTERVALS[interval].lower()} "
                        "yet on this installation.", field="plan", status=409)
    customer = _customer(workspace, user)
    # Two clicks within the same ten minutes are one checkout (one idempotency key).
    window = int(utcnow().timestamp()) // 600
    session = _stripe_call("starting a checkout", lambda: client().v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer,
            "client_reference_id": str(workspace.id),
            "line_items": [{"price": price, "quantity": 1}],
            "billing_address_collection": "required",
            "automatic_tax": {"enabled": bool(current_app.config.get("STRIPE_AUTOMATIC_TAX"))},
            "subscription_data": {"metadata": {"workspace_id": str(workspace.id)}},
            "success_url": url_for("billing.checkout_done", _external=True),
            "cancel_url": url_for("billing.checkout_cancelled", _external=True),
        },
        options={"idempotency_key": f"lumnar-checkout-{workspace.id}-{plan.key}-{interval}-{window}"}))
    insight.count("billing.checkout_started")
    return session["url"]


def portal_url(workspace: Workspace) -> str:
    """A Customer Portal session: change plan, payment method, cancel, invoices."""
    if not configured():
        raise RuleError("Billing is not configured on this installation.", status=409)
    account = BillingAccount.get_or_none(BillingAccount.workspace_id == workspace.id)
    if account is None or not account.stripe_customer_id:
        raise RuleError("There is nothing to manage yet: upgrade first.", status=409)
    window = int(utcnow().timestamp()) // 60
    portal = _stripe_call("opening the billing portal", lambda: client().v1.billing_portal.sessions.create(
        params={"customer": account.stripe_customer_id,
                "return_url": url_for("billing.billing_page", _external=True)},
        options={"idempotency_key": f"lumnar-portal-{workspace.id}-{window}"}))
    return portal["url"]


# --- webhooks ----------------------------------------------------------------------------------------


class BadWebhook(ValueError):
    pass


def receive(payload: bytes, signature: str | None) -> StripeEvent | None:
    """Check a webhook's signature over its raw body (300 s tolerance) and keep the event
    once; None for a second delivery of an event already kept. The work happens in the
    worker (billing.event), so Stripe gets its answer at once."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise BadWebhook("webhooks are not configured")
    try:
        event = stripe.Webhook.construct_event(payload, signature or "", secret, tolerance=300)
    except stripe.SignatureVerificationError:
        raise BadWebhook("bad signature") from None
    except ValueError:
        raise BadWebhook("not a JSON event") from None
    data = event.to_dict()
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise BadWebhook("not an event")
    handled = data["type"] in HANDLERS
    try:
        with database.atomic():
            # An event of a type we do not apply keeps no payload at all: it may describe a
            # payment method (brand, last four digits), which we never keep, even briefly.
            row = StripeEvent.create(stripe_id=data["id"], type=data["type"][:80],
                                     created=int(data.get("created") or 0),
                                     payload=payload.decode("utf-8") if handled else "",
                                     processed_at=None if handled else utcnow(),
                                     outcome="" if handled else "ignored")
    except IntegrityError:
        return None  # a second delivery (the unique id): acknowledged, not applied again
    return row if handled else None


def hand_over(event: StripeEvent) -> None:
    background.enqueue("billing.event", event.id)


def process(event_id: int) -> str:
    """Apply one kept event (the worker): the outcome in words, also kept on the row."""
    row = StripeEvent.get_or_none(StripeEvent.id == event_id)
    if row is None or row.processed_at is not None:
        return "already applied"
    data = json.loads(row.payload)
    obj = data.get("data", {}).get("object", {})
    handler = HANDLERS.get(row.type)
    outcome = handler(obj) if handler else "ignored"
    StripeEvent.update(processed_at=utcnow(), payload="", outcome=outcome[:200]).where(
        StripeEvent.id == row.id).execute()
    return outcome


def _from_stamp(value) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(int(value), timezone.utc).replace(tzinfo=None)


def _account_of(obj: dict) -> BillingAccount | None:
    """The account a Stripe object belongs to: by customer id, else by the workspace id in
    its metadata (a subscription made by our checkout carries it)."""
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    account = None
    if customer:
        account = BillingAccount.get_or_none(BillingAccount.stripe_customer_id == customer)
    if account is None:
        workspace_id = (obj.get("metadata") or {}).get("workspace_id") or obj.get("client_reference_id")
        if workspace_id and str(workspace_id).isdigit() and Workspace.get_or_none(
                Workspace.id == int(workspace_id)):
            account = account_for(int(workspace_id))
            if customer and not account.stripe_customer_id:
                account.stripe_customer_id = customer
                account.save()
    return account


def _checkout_completed(session: dict) -> str:
    account = _account_of(session)
    if account is None:
        return "no workspace for this checkout"
    if session.get("customer_details"):  # the billing address entered in Checkout
        _keep_address(account, session["customer_details"])
    if session.get("subscription"):
        return _sync_subscription(account, session["subscription"])
    return "checkout without subscription"


def _subscription_changed(subscription: dict) -> str:
    account = _account_of(subscription)
    if account is None:
        return "no workspace for this subscription"
    return _sync_subscription(account, subscription["id"])


def _sync_subscription(account: BillingAccount, subscription_id: str) -> str:
    """Read the subscription back from Stripe and apply it as it stands now: events arrive
    late and out of order, and whatever order they come in, the last one applied leaves
    Stripe's current state. A Stripe that does not answer fails the task, which Huey
    retries."""
    subscription = client().v1.subscriptions.retrieve(subscription_id).to_dict()
    status = subscription.get("status", "")
    items = (subscription.get("items") or {}).get("data") or []
    price = (items[0].get("price") if items else None) or {}
    found = plan_for_price(price)
    if account.subscription_id and account.subscription_id != subscription_id and status not in PAYING:
        return f"an older subscription is {status}: ignored"
    now = utcnow()
    fields = dict(subscription_id=subscription_id, subscription_status=status,
                  cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
                  current_period_end=_from_stamp(items[0].get("current_period_end") if items else None),
                  updated_at=now)
    plan = FREE
    if status in PAYING and found:
        plan, fields["interval"] = found
    fields["plan"] = plan.key
    if status == "active":
        fields["payment_failed_at"] = None
    with database.atomic():
        BillingAccount.update(**fields).where(BillingAccount.id == account.id).execute()
        lapsed = status == "past_due" and account.payment_failed_at and \
            account.payment_failed_at <= now - GRACE
        apply_plan(account.workspace_id, FREE if lapsed else plan,
                   "" if status in ("canceled", "incomplete_expired") else status)
    return f"subscription {status}: {plan.key}"


def _invoice(invoice: dict, failed: bool) -> str:
    account = _account_of(invoice)
    if account is None:
        return "no workspace for this invoice"
    taxes = invoice.get("total_taxes")
    tax = sum(t.get("amount", 0) for t in taxes) if taxes is not None else invoice.get("tax") or 0
    fields = dict(workspace_id=account.workspace_id, number=invoice.get("number") or "",
                  issued_at=_from_stamp(invoice.get("created")) or utcnow(),
                  amount_cents=int(invoice.get("total") or 0), tax_cents=int(tax),
                  currency=(invoice.get("currency") or "eur").lower(),
                  status=invoice.get("status") or "", hosted_url=invoice.get("hosted_invoice_url") or "")
    existing = Invoice.get_or_none(Invoice.stripe_invoice_id == invoice["id"])
    if existing is None:
        Invoice.create(stripe_invoice_id=invoice["id"], **fields)
    elif existing.status != "paid":  # a paid invoice stays paid, whatever arrives late
        Invoice.update(**fields).where(Invoice.id == existing.id).execute()
    if failed:
        if account.payment_failed_at is None:
            now = utcnow()
            with database.atomic():
                BillingAccount.update(payment_failed_at=now, updated_at=now).where(
                    BillingAccount.id == account.id).execute()
                Workspace.update(plan_status="past_due").where(
                    Workspace.id == account.workspace_id).execute()
            _tell_owners(account.workspace_id, "payment_failed", "Your Lumnar payment failed",
                         grace_ends=now + GRACE)
        return "payment failed"
    if account.payment_failed_at is not None:
        BillingAccount.update(payment_failed_at=None, updated_at=utcnow()).where(
            BillingAccount.id == account.id).execute()
        workspace = Workspace.get_by_id(account.workspace_id)
        if workspace.plan_status == "past_due":
            Workspace.update(plan_status="active").where(Workspace.id == workspace.id).execute()
    return "invoice paid"


def _customer_updated(customer: dict) -> str:
    account = _account_of(customer)
    if account is None:
        return "no workspace for this customer"
    _keep_address(account, customer)
    return "billing address kept"


def _keep_address(account: BillingAccount, customer: dict) -> None:
    """The name and postal address of a Stripe customer (or a Checkout's customer_details)."""
    address = customer.get("address") or {}
    lines = {k: address.get(k) for k in ("line1", "line2", "postal_code", "city", "state")
             if address.get(k)}
    BillingAccount.update(name=(customer.get("name") or "")[:200],
                          country=(address.get("country") or "")[:2],
                          address=json.dumps(lines) if lines else "", updated_at=utcnow()).where(
        BillingAccount.id == account.id).execute()


HANDLERS = {
    "checkout.session.completed": _checkout_completed,
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
    "invoice.paid": lambda invoice: _invoice(invoice, failed=False),
    "invoice.payment_failed": lambda invoice: _invoice(invoice, failed=True),
    "customer.updated": _customer_updated,
}


def _tell_owners(workspace_id: int, template: str, subject: str, **context) -> None:
    workspace = Workspace.get_or_none(Workspace.id == workspace_id)
    if workspace is None:
        return  # deleted: a late invoice event is kept as a record, and told to nobody
    owners = [u.email for u in User.select(User.email).join(Membership).where(
        (Membership.workspace == workspace_id) & (Membership.role == Membership.OWNER))]
    for email in owners:
        mail.send(email, template, subject, workspace=workspace,
                  url=mail_link("billing.billing_page"), **context)


def mail_link(endpoint: str) -> str:
    return current_app.config["BASE_URL"] + url_for(endpoint)


# --- a workspace being deleted (app/privacy/deletion) ------------------------------------------------


def _subscription_of(workspace_id: int) -> str:
    account = BillingAccount.get_or_none(BillingAccount.workspace_id == workspace_id)
    if account is None or not account.subscription_id or not configured():
        return ""
    if account.subscription_status in ("canceled", "incomplete_expired"):
        return ""
    return account.subscription_id


def cancel_at_period_end(workspace_id: int, cancel: bool) -> None:
    """While a deletion waits, the subscription is set to end with its period (and set back
    when the deletion is cancelled), so that nobody pays for a renewal during the wait."""
    subscription_id = _subscription_of(workspace_id)
    if not subscription_id:
        return
    _stripe_call("changing the subscription's end", lambda: client().v1.subscriptions.update(
        subscription_id, params={"cancel_at_period_end": cancel}))
    BillingAccount.update(cancel_at_period_end=cancel, updated_at=utcnow()).where(
        BillingAccount.workspace_id == workspace_id).execute()


def cancel_now(workspace_id: int) -> None:
    """The subscription ends at once: the workspace is being deleted. Stripe's refusal or
    silence raises BillingUnavailable, and the deletion waits for the next run."""
    subscription_id = _subscription_of(workspace_id)
    if not subscription_id:
        return
    _stripe_call("cancelling the subscription", lambda: client().v1.subscriptions.cancel(
        subscription_id, options={"idempotency_key": f"lumnar-delete-{workspace_id}"}))
    BillingAccount.update(subscription_status="canceled", updated_at=utcnow()).where(
        BillingAccount.workspace_id == workspace_id).execute()


# --- on the clock ------------------------------------------------------------------------------------


def lapse_unpaid(now: datetime | None = None) -> int:
    """Workspaces whose payment has failed for longer than the grace period drop to the
    Free plan's limits (nothing is deleted); a later payment brings the plan back."""
    now = now or utcnow()
    lapsed = 0
    for account in BillingAccount.select().where(
            BillingAccount.payment_failed_at.is_null(False)
            & (BillingAccount.payment_failed_at <= now - GRACE)):
        workspace = Workspace.get_or_none(Workspace.id == account.workspace_id)
        if workspace is not None and workspace.plan != FREE.key:
            apply_plan(workspace.id, FREE, "past_due")
            lapsed += 1
    return lapsed


def purge_expired_records(now: datetime | None = None) -> int:
    """Billing records older than the legal retention period, of workspaces that no longer
    exist (a live workspace keeps its own history)."""
    now = now or utcnow()
    years = int(current_app.config.get("BILLING_RETENTION_YEARS", 10))
    cutoff = now - timedelta(days=365 * years + years // 4)
    live = Workspace.select(Workspace.id)
    gone = Invoice.delete().where((Invoice.issued_at < cutoff)
                                  & Invoice.workspace_id.not_in(live)).execute()
    kept = Invoice.select(Invoice.workspace_id)
    BillingAccount.delete().where(BillingAccount.workspace_id.not_in(live)
                                  & BillingAccount.workspace_id.not_in(kept)
                                  & (BillingAccount.updated_at < cutoff)).execute()
    StripeEvent.delete().where(StripeEvent.processed_at.is_null(False)
                               & (StripeEvent.received_at < now - timedelta(days=30))).execute()
    return gone


# --- set-up ------------------------------------------------------------------------------------------


def setup_stripe() -> dict[str, str]:
    """Create the products and prices of the plans for sale in the configured Stripe account
    (found again by their lookup keys, so running it twice creates nothing twice) and return
    the settings that name them: {environment variable: price id}."""
    api = client().v1
    wanted = {plans.lookup_key(p, i): (p, i) for p in plans.FOR_SALE for i in plans.INTERVALS}
    found = {price["lookup_key"]: price for price in api.prices.list(
        params={"lookup_keys": list(wanted), "limit": 100}).to_dict()["data"]}
    settings = {}
    products = {}
    for key, (plan, interval) in wanted.items():
        price = found.get(key)
        if price is None:
            if plan.key not in products:
                products[plan.key] = api.products.create(
                    params={"name": f"Lumnar {plan.name}", "metadata": {"lumnar_plan": plan.key}},
                    options={"idempotency_key": f"lumnar-product-{plan.key}"})["id"]
            price = api.prices.create(params={
                "product": products[plan.key], "currency": plans.CURRENCY,
                "unit_amount": plans.cents(plan, interval), "recurring": {"interval": interval},
                "lookup_key": key, "nickname": f"{plan.name} {plans.INTERVALS[interval].lower()}",
            }, options={"idempotency_key": f"lumnar-price-{key}"}).to_dict()
        settings[plans.price_setting(plan, interval)] = price["id"]
    return settings
