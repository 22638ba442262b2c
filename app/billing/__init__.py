"""Plans and Stripe billing: limits per plan, Checkout and the Customer Portal, webhooks."""

from app.billing import plans


def init_app(app) -> None:
    # Limits apply only where a workspace can pay to lift them.
    plans.enforce(bool(app.config.get("STRIPE_SECRET_KEY")))
