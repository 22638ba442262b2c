"""Flow: one HTTP request with templated URL, headers and JSON body, credential injected as a header."""

from app.automations import templating
from app.automations.flows.common import STATUS_CHOICES, auth_headers, expect
from app.automations.flows.registry import Field, Flow, FlowFailed, RunContext, register

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def run(ctx: RunContext) -> None:
    cfg = ctx.config
    url = ctx.render(cfg["url"]).strip()
    headers = {}
    if cfg.get("headers", "").strip():
        rendered = ctx.render_json(cfg["headers"])
        if not isinstance(rendered, dict):
            raise FlowFailed("Headers must render to a JSON object of names and values.")
        headers = {str(k): "" if v is None else str(v) for k, v in rendered.items()}
    # The credential goes in after the templates are rendered: it is never a template input.
    headers.update(auth_headers(ctx, cfg.get("credential"), cfg.get("auth_header") or "Authorization"))
    body = ctx.render_json(cfg["body"]) if cfg.get("body", "").strip() else None
    if body is not None and cfg["method"] in ("GET", "DELETE"):
        ctx.log(f"Note: sending a body with {cfg['method']}.")
    response = ctx.http(cfg["method"], url, headers=headers, json=body)
    expect(ctx, response, cfg.get("expected_status") or "2xx")
    if response.text.strip():
        ctx.log(f"  answer: {ctx.clip(response.text.strip(), 500)}")


def check(cfg: dict) -> dict:
    if cfg.get("headers", "").strip():
        if not isinstance(templating.render_json(cfg["headers"], templating.context()), dict):
            return {"headers": "Headers must be a JSON object, like {\"X-Source\": \"lumnar\"}."}
    return {}


register(Flow(
    name="http_request",
    title="HTTP request",
    description="Call any web API: method, URL, headers and a JSON body filled in from the "
                "trigger's data, with a stored credential sent as a header.",
    fields=(
        Field("method", "Method", "select", default="POST", choices=tuple((m, m) for m in METHODS)),
        Field("url", "URL", "url", help="May use the trigger's data, e.g. "
              "https://api.example.com/items/{{ event.conversation_id }}"),
        Field("headers", "Headers (JSON object)", "json_template", required=False,
              help='e.g. {"X-Source": "lumnar"}. Do not put secrets here: use the credential.'),
        Field("body", "Body (JSON)", "json_template", required=False,
              help='e.g. {"email": {{ event.visitor_email|tojson }}}'),
        Field("credential", "Credential", "credential", required=False,
              credential_kinds=("api_token", "oauth", "login", "secret_map"),
              help="A token is sent as “Authorization: Bearer …”, a login as Basic, "
                   "a secret map as one header per name."),
        Field("auth_header", "Header for the token", "text", required=False,
              default="Authorization", help="Another name (e.g. X-Api-Key) sends the bare token."),
        Field("expected_status", "Success means", "select", default="2xx", choices=STATUS_CHOICES),
    ),
    run=run,
    check=check,
))
