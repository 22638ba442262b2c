"""The service providers that receive personal data from Lumnar: ONE list, from which the
/privacy/providers page is made and against which outbound connections are checked (each
entry's `hosts(config)` names the (host, port) pairs its connections go to, read from the
app's settings, so that a test's loopback doubles are recognised as the real ones are)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit


class Endpoint(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465, "http": 80, "https": 443,
                 "postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}
STRIPE_API = "https://api.stripe.com"


def endpoint(url: str) -> Endpoint | None:
    """The (host, port) a URL's connections go to; None for an empty or host-less URL."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    return Endpoint(parts.hostname.lower(), port)


def _present(*found) -> frozenset[Endpoint]:
    return frozenset(e for e in found if e is not None)


@dataclass(frozen=True)
class Provider:
    name: str
    role: str  # one word for the table: what they do for us
    purpose: str  # why they get the data
    data: str  # what they receive
    hosts: Callable[[Mapping], frozenset[Endpoint]]  # outbound connections to them
    where: str = ""  # where the data is processed, when the provider says

    def display_name(self, config: Mapping) -> str:
        if self.role == "hosting" and config.get("HOSTING_PROVIDER"):
            return f"{self.name}: {config['HOSTING_PROVIDER']}"
        return self.name


PROVIDERS = (
    Provider(
        name="Hosting",
        role="hosting",
        purpose="Runs the servers this installation lives on: the web pages, the chat, the "
                "background worker, the database and its backups.",
        data="Everything Lumnar keeps: accounts, workspaces, chats and their files, visitors' "
             "e-mail addresses, automation set-ups (credentials encrypted with keys kept "
             "outside the database), billing records.",
        # The web process itself is not an outbound connection; a database or task queue on
        # another machine is.
        hosts=lambda config: _present(endpoint(config.get("DATABASE_URL") or ""),
                                      endpoint(config.get("REDIS_URL") or "")),
    ),
    Provider(
        name="E-mail delivery",
        role="email",
        purpose="Delivers the e-mails Lumnar sends: confirming an address, password resets, "
                "invitations, chat transcripts and replies, payment and policy notices.",
        data="The recipient's e-mail address and the e-mail itself (which may quote a chat "
             "message or name a workspace).",
        hosts=lambda config: _present(endpoint(config.get("SMTP_URL") or "")),
    ),
    Provider(
        name="Stripe",
        role="payments",
        purpose="Takes payments for paid plans: Checkout, the Customer Portal, invoices and "
                "tax.",
        data="The workspace's name and id, the paying owner's e-mail address, the billing "
             "address; card details are typed into Stripe's own pages and never reach Lumnar.",
        hosts=lambda config: _present(endpoint(config.get("STRIPE_API_BASE") or STRIPE_API)),
        where="Stripe, Inc. and Stripe Payments Europe, Ltd.",
    ),
)


def all_hosts(config: Mapping) -> frozenset[Endpoint]:
    """Every endpoint a provider of PROVIDERS is reached at, under these settings."""
    return frozenset().union(*(p.hosts(config) for p in PROVIDERS))


def provider_for(config: Mapping, host: str, port: int) -> Provider | None:
    """The provider an outbound connection to (host, port) goes to, or None."""
    target = Endpoint(host.lower(), port)
    return next((p for p in PROVIDERS if target in p.hosts(config)), None)
