"""Flow: a chat visitor who left an e-mail becomes (or updates) one contact in the customer's CRM."""

from urllib.parse import quote

from app.automations.flows.common import auth_headers, expect
from app.automations.flows.registry import (
    Field,
    Flow,
    FlowFailed,
    FlowSkipped,
    RunContext,
    register,
)


def _visitor(payload: dict) -> tuple[str, str]:
    """The visitor's e-mail (lower-cased) and name, wherever the event carries them."""
    visitor = payload.get("visitor") if isinstance(payload.get("visitor"), dict) else {}
    email = payload.get("visitor_email") or visitor.get("email") or payload.get("email") or ""
    name = payload.get("visitor_name") or visitor.get("name") or payload.get("name") or ""
    return str(email).strip().lower(), str(name).strip()


def _contacts(response) -> list:
    """The contacts in a search answer: a bare list, or one under a usual key."""
    if not response.content.strip():
        return []
    try:
        data = response.json()
    except ValueError:
        raise FlowFailed("The CRM's search answer is not JSON.") from None
    if isinstance(data, dict):
        data = next((data[k] for k in ("contacts", "results", "data", "items")
                     if isinstance(data.get(k), list)), [])
    return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []


def run(ctx: RunContext) -> None:
    cfg = ctx.config
    email, name = _visitor(ctx.payload)
    if not email or "@" not in email:
        raise FlowSkipped("The event carries no visitor e-mail: nothing to send to the CRM.")
    base = ctx.render(cfg["base_url"]).strip().rstrip("/")
    headers = {"Accept": "application/json"}
    headers.update(auth_headers(ctx, cfg["credential"]))

    found = ctx.http("GET", f"{base}/contacts?email={quote(email, safe='@')}", headers=headers)
    expect(ctx, found, "2xx")
    # De-duplicated by e-mail: the CRM's search may be fuzzy, so match exactly here.
    match = next((c for c in _contacts(found)
                  if str(c.get("email", "")).strip().lower() == email), None)

    fields = {"email": email}
    if name:
        fields["name"] = name
    for key in ("page_url", "site", "site_name", "conversation_id"):
        if ctx.payload.get(key) not in (None, ""):
            fields[key] = ctx.payload[key]
    if cfg.get("extra", "").strip():
        extra = ctx.render_json(cfg["extra"])
        if not isinstance(extra, dict):
            raise FlowFailed("Extra fields must render to a JSON object.")
        fields.update(extra)

    if match is not None and match.get("id") not in (None, ""):
        ctx.log(f"Contact {match['id']} already has {email}: updating it.")
        answer = ctx.http("PATCH", f"{base}/contacts/{quote(str(match['id']), safe='')}",
                          headers=headers, json=fields)
    else:
        ctx.log(f"No contact with {email} yet: creating one.")
        answer = ctx.http("POST", f"{base}/contacts", headers=headers, json=fields)
    expect(ctx, answer, "2xx")


register(Flow(
    name="chat_lead_crm",
    title="New chat lead → CRM",
    description="When a chat visitor leaves an e-mail, create or update their contact in your "
                "CRM's REST API (GET /contacts?email=…, then PATCH /contacts/<id> or POST "
                "/contacts), with a bearer token. One contact per e-mail address.",
    fields=(
        Field("base_url", "CRM API base URL", "url", help="e.g. https://crm.example.com/api/v1"),
        Field("credential", "CRM API token", "credential", credential_kinds=("api_token", "oauth")),
        Field("extra", "Extra contact fields (JSON object)", "json_template", required=False,
              help='e.g. {"source": "website chat", "first_message": {{ event.text|tojson }}}'),
    ),
    run=run,
))
