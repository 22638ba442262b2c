"""Flow: post a message text to a Slack-style incoming webhook."""

from app.automations.flows.common import expect
from app.automations.flows.registry import Field, Flow, FlowFailed, RunContext, register


def run(ctx: RunContext) -> None:
    cfg = ctx.config
    # The webhook URL is itself the secret: it comes from the vault, so the log shows it redacted.
    url = ctx.secrets(cfg["credential"]).get("url", "")
    if not url:
        raise FlowFailed("The webhook credential holds no URL.")
    text = ctx.render(cfg["text"]).strip()
    if not text:
        raise FlowFailed("The message rendered empty.")
    response = ctx.http("POST", url, headers={"Content-Type": "application/json"},
                        json={"text": text})
    expect(ctx, response, "2xx")


register(Flow(
    name="slack_webhook",
    title="Slack-style incoming webhook",
    description="Post a message to a Slack, Mattermost or Discord-compatible incoming webhook.",
    fields=(
        Field("credential", "Webhook URL", "credential", credential_kinds=("webhook_url",)),
        Field("text", "Message", "template",
              help="e.g. “New chat from {{ event.visitor_name }}: {{ event.text }}”."),
    ),
    run=run,
))
