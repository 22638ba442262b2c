"""Flow: POST the trigger's data as JSON, signed with an HMAC-SHA256 header the receiver can check."""

import hashlib
import hmac
import json
import time

from app.automations.flows.common import expect
from app.automations.flows.registry import Field, Flow, FlowFailed, RunContext, register

HEADER = "X-Lumnar-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex>`: HMAC-SHA256 over "<t>.<body>". The timestamp lets the receiver
    refuse replays of old deliveries."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _signing_secret(secrets: dict) -> str:
    for name in ("token", "signing_secret", "secret"):
        if secrets.get(name):
            return secrets[name]
    values = [v for v in secrets.values() if isinstance(v, str) and v]
    if not values:
        raise FlowFailed("The signing credential holds no secret.")
    return values[0]


def run(ctx: RunContext) -> None:
    cfg = ctx.config
    secret = _signing_secret(ctx.secrets(cfg["credential"]))
    document = {
        "automation": ctx.automation,
        "trigger": ctx.trigger,
        "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": ctx.payload,
    }
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    headers = {"Content-Type": "application/json", HEADER: signature(secret, int(time.time()), body)}
    response = ctx.http("POST", ctx.render(cfg["url"]).strip(), headers=headers, content=body)
    expect(ctx, response, "2xx")


register(Flow(
    name="outgoing_webhook",
    title="Outgoing webhook",
    description="POST the event as JSON to your endpoint, signed in the X-Lumnar-Signature "
                "header (t=<unix time>,v1=<HMAC-SHA256 of \"<t>.<body>\">).",
    fields=(
        Field("url", "Endpoint URL", "url"),
        Field("credential", "Signing secret", "credential",
              credential_kinds=("secret_map", "api_token"),
              help="An API token, or a secret map with a signing_secret entry."),
    ),
    run=run,
))
