"""Billing records: the workspace's Stripe customer and subscription, its invoices, and the
Stripe events received. They hold the workspace id as a plain integer, with no foreign key:
deleting a workspace deletes everything else and keeps these for the legal retention period
(LUMNAR_BILLING_RETENTION_YEARS). No card data, not even its brand or last four digits."""

from peewee import BooleanField, CharField, DateTimeField, IntegerField, TextField

from app.db import BaseModel, utcnow


class BillingAccount(BaseModel):
    workspace_id = IntegerField(unique=True)
    stripe_customer_id = CharField(max_length=64, default="", index=True)
    subscription_id = CharField(max_length=64, default="")
    subscription_status = CharField(max_length=24, default="")
    plan = CharField(max_length=16, default="free")
    interval = CharField(max_length=8, default="")
    current_period_end = DateTimeField(null=True)
    cancel_at_period_end = BooleanField(default=False)
    payment_failed_at = DateTimeField(null=True)  # the first failure of the unpaid run
    # The billing address as Stripe gives it (the customer enters it in Checkout or the
    # portal): a name, a country, the postal lines as one JSON object.
    name = CharField(max_length=200, default="")
    country = CharField(max_length=2, default="")
    address = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "billing_account"


class Invoice(BaseModel):
    """A transaction as Stripe reports it: what was charged, when, and its state."""

    workspace_id = IntegerField(index=True)
    stripe_invoice_id = CharField(max_length=64, unique=True)
    number = CharField(max_length=64, default="")
    issued_at = DateTimeField()
    amount_cents = IntegerField(default=0)
    tax_cents = IntegerField(default=0)
    currency = CharField(max_length=3, default="eur")
    status = CharField(max_length=16, default="")
    hosted_url = CharField(max_length=500, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "billing_invoice"


class StripeEvent(BaseModel):
    """Each webhook event once: a second delivery of the same id is acknowledged and ignored.
    The payload waits here for the worker and is cleared once applied."""

    stripe_id = CharField(max_length=80, unique=True)
    type = CharField(max_length=80)
    created = IntegerField(default=0)  # Stripe's own timestamp of the event
    payload = TextField(default="")
    received_at = DateTimeField(default=utcnow)
    processed_at = DateTimeField(null=True)
    outcome = CharField(max_length=200, default="")

    class Meta:
        table_name = "billing_event"


BILLING_MODELS = [BillingAccount, Invoice, StripeEvent]
