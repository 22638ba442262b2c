"""Flow: a templated e-mail sent through the outbox, like every other e-mail Lumnar sends."""

from app.automations.flows.registry import (
    Field,
    Flow,
    FlowFailed,
    FlowSkipped,
    RunContext,
    register,
)


def run(ctx: RunContext) -> None:
    cfg = ctx.config
    to = ctx.render(cfg["to"]).strip()
    if not to:
        raise FlowSkipped("No recipient: the address rendered empty for this event.")
    if "@" not in to or any(c in to for c in "\r\n,; "):
        raise FlowFailed(f"“{to}” is not one e-mail address.")
    # A header must be one line: a newline from the event's data must not start a new header.
    subject = " ".join(ctx.render(cfg["subject"]).split())[:200] or "(no subject)"
    ctx.send_mail(to, subject, ctx.render(cfg["body"]))


register(Flow(
    name="email",
    title="E-mail",
    description="Send an e-mail whose recipient, subject and text are filled in from the "
                "trigger's data.",
    fields=(
        Field("to", "To", "email", help="One address; may be {{ event.visitor_email }}."),
        Field("subject", "Subject", "template"),
        Field("body", "Text", "template",
              help="Plain text; e.g. “{{ event.visitor_name }} wrote: {{ event.text }}”."),
    ),
    run=run,
))
