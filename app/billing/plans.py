"""The plans, as data: the one source of their limits and prices for the pricing page, the
billing page, the checks in each area's service, and the Stripe set-up command."""

from dataclasses import dataclass

UNLIMITED = None  # a limit of None: no limit


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    pitch: str
    sites: int | None
    agents: int | None  # members and pending invitations together
    conversations: int | None  # new conversations a calendar month (UTC)
    automations: int | None  # active at once (our staff set them up)
    monthly_cents: int
    yearly_cents: int
    paid: bool = True

    def limit_words(self, what: str) -> str:
        limit = getattr(self, what)
        return "Unlimited" if limit is UNLIMITED else f"{limit:,}"


FREE = Plan("free", "Free", "For trying Lumnar on one site.", sites=1, agents=2,
            conversations=300, automations=0, monthly_cents=0, yearly_cents=0, paid=False)
PRO = Plan("pro", "Pro", "For a growing team on a few sites.", sites=5, agents=10,
           conversations=UNLIMITED, automations=3, monthly_cents=2900, yearly_cents=29000)
BUSINESS = Plan("business", "Business", "For businesses that run on chat and automations.",
                sites=UNLIMITED, agents=UNLIMITED, conversations=UNLIMITED,
                automations=UNLIMITED, monthly_cents=9900, yearly_cents=99000)
# Without Stripe configured (a laptop, a self-hosted install that bills nobody) every
# workspace is on this plan: nothing is limited and nothing is for sale.
DEMO = Plan("demo", "Demo", "Billing is not configured: nothing is limited.", sites=UNLIMITED,
            agents=UNLIMITED, conversations=UNLIMITED, automations=UNLIMITED,
            monthly_cents=0, yearly_cents=0, paid=False)

PLANS = {plan.key: plan for plan in (FREE, PRO, BUSINESS)}
FOR_SALE = [PRO, BUSINESS]
INTERVALS = {"month": "Monthly", "year": "Yearly"}
CURRENCY = "eur"


def lookup_key(plan: Plan, interval: str) -> str:
    """The Stripe Price's lookup key for a plan and interval (`flask billing setup` sets it)."""
    return f"lumnar_{plan.key}_{interval}"


def price_setting(plan: Plan, interval: str) -> str:
    """The environment variable holding the Stripe Price id of a plan and interval."""
    return f"LUMNAR_STRIPE_PRICE_{plan.key.upper()}_{'MONTHLY' if interval == 'month' else 'YEARLY'}"


def cents(plan: Plan, interval: str) -> int:
    return plan.monthly_cents if interval == "month" else plan.yearly_cents


def money(amount_cents: int, currency: str = CURRENCY) -> str:
    symbol = {"eur": "€", "usd": "$", "gbp": "£"}.get(currency.lower())
    value = f"{amount_cents / 100:,.2f}".removesuffix(".00")
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


# Whether limits are enforced in this process: only when Stripe is configured (a workspace
# cannot upgrade otherwise). Set by app.billing.init_app from the configuration; the chat's
# message path reads it instead of the app's config because it may run outside a request.
_enforced = {"on": False}


def enforce(on: bool) -> None:
    _enforced["on"] = bool(on)


def enforced() -> bool:
    return _enforced["on"]
