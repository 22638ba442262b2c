"""The billing forms: the plan and interval an owner upgrades to."""

from wtforms import RadioField, SelectChoice

from app.billing.plans import FOR_SALE, INTERVALS
from app.csrf import TokenForm as FlaskForm


class CheckoutForm(FlaskForm):
    # Checked by the service too (start_checkout): a plan that is not for sale is refused there.
    plan = RadioField("Plan", choices=[SelectChoice(p.key, p.name) for p in FOR_SALE],
                      validate_choice=False)
    interval = RadioField("Billed", choices=[SelectChoice(k, v) for k, v in INTERVALS.items()],
                          validate_choice=False)
