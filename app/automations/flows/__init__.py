"""Automation flows, one module each; importing this package fills registry.FLOWS in menu order."""

from app.automations.flows import (  # noqa: F401  (each module registers its flow)
    chat_lead_crm,
    email,
    http_request,
    outgoing_webhook,
    registry,
    slack_webhook,
)

# The order flows are offered in; any other registered flow follows.
MENU = ("http_request", "outgoing_webhook", "email", "slack_webhook", "chat_lead_crm")
_rest = {name: flow for name, flow in registry.FLOWS.items() if name not in MENU}
_menu = {name: registry.FLOWS[name] for name in MENU}
registry.FLOWS.clear()
registry.FLOWS.update(_menu | _rest)
