"""Billing pages (plan, usage, invoices, Upgrade, Manage billing) and Stripe's webhook."""

import logging
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, redirect, request

from app.accounts.sessions import login_required, owner_required
from app.billing import plans, service
from app.billing.forms import CheckoutForm
from app.billing.models import BillingAccount, Invoice
from app.errors import RuleError
from app.extensions import csrf
from app.rendering import render, render_form_errors
from app.security import CSP

log = logging.getLogger(__name__)

bp = Blueprint("billing", __name__, url_prefix="/dashboard/billing")
# Stripe's own door: the signature over the raw body is the credential, not a session.
hooks = csrf.exempt(Blueprint("stripe_hooks", __name__, url_prefix="/billing"))


# Stripe's own pages, where Upgrade and Manage billing send the browser: a form whose answer
# redirects to another origin needs that origin in form-action (browsers check redirects too).
STRIPE_PAGES = ("https://checkout.stripe.com", "https://billing.stripe.com")


@bp.after_request
def allow_stripe_pages(response):
    origins = list(STRIPE_PAGES)
    base = current_app.config.get("STRIPE_API_BASE")
    if base:  # a Stripe test double or proxy serves those pages itself
        parts = urlsplit(base)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    response.headers["Content-Security-Policy"] = CSP.replace(
        "form-action 'self'", "form-action 'self' " + " ".join(origins))
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@bp.app_template_global()
def billing_notice():
    """The payment-failed banner of the dashboard layout (no query: the workspace row says)."""
    membership = g.get("membership")
    if membership is not None and membership.workspace.plan_status == "past_due":
        return membership
    return None


@bp.app_template_global()
def plan_name(workspace) -> str:
    return service.plan_of(workspace).name


@bp.app_template_global()
def automation_allowance(workspace) -> dict:
    """For the staff's automation form: the plan, and how many automations are active."""
    plan = service.plan_of(workspace)
    active = service.active_automations(workspace.id)
    return dict(plan=plan, active=active,
                full=plan.automations is not None and active >= plan.automations)


def page_context(**extra) -> dict:
    workspace = g.membership.workspace
    account = BillingAccount.get_or_none(BillingAccount.workspace_id == workspace.id)
    context = dict(workspace=workspace, plan=service.plan_of(workspace),
                   configured=service.configured(), account=account,
                   usage=service.usage(workspace), plans=plans, grace=service.GRACE,
                   invoices=list(Invoice.select().where(Invoice.workspace_id == workspace.id)
                                 .order_by(Invoice.issued_at.desc()).limit(24)))
    context.setdefault("form", CheckoutForm())
    context.update(extra)
    return context


@bp.get("")
@login_required
def billing_page():
    if g.membership is None:
        return redirect("/dashboard")
    return render("billing/page.html", **page_context())


@bp.post("/checkout")
@owner_required
def checkout_start():
    form = CheckoutForm()
    try:
        url = service.start_checkout(g.membership.workspace, g.user, form.plan.data,
                                     form.interval.data)
    except RuleError as err:
        return render_form_errors("billing/page.html", None, form, error=err,
                                  **page_context(form=form))
    return redirect(url, code=303)  # Stripe's own page: a plain form post, no htmx


@bp.post("/portal")
@owner_required
def portal_open():
    try:
        url = service.portal_url(g.membership.workspace)
    except RuleError as err:
        form = CheckoutForm()
        return render_form_errors("billing/page.html", None, form, error=err,
                                  **page_context(form=form))
    return redirect(url, code=303)


@bp.get("/done")
@login_required
def checkout_done():
    return render("billing/returned.html", done=True)


@bp.get("/cancelled")
@login_required
def checkout_cancelled():
    return render("billing/returned.html", done=False)


@hooks.post("/webhook")
def webhook():
    try:
        event = service.receive(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    except service.BadWebhook as exc:
        # The reason only: a payload that failed its check is nobody's to keep in a log.
        log.warning("Stripe webhook refused: %s", exc)
        return jsonify(error=str(exc)), 400
    if event is not None:
        service.hand_over(event)
    return jsonify(received=True), 200

