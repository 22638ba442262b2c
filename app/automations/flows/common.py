"""Small helpers the built-in flows share: status checks and answer previews."""

import base64

import httpx

from app.automations.flows.registry import FlowFailed, RunContext

STATUS_CHOICES = (("2xx", "Any 2xx"), ("2xx_3xx", "Any 2xx or 3xx"), ("200", "Exactly 200"),
                  ("any", "Any status"))


def status_ok(expected: str, status: int) -> bool:
    if expected == "any":
        return True
    if expected == "2xx_3xx":
        return 200 <= status < 400
    if expected.isdigit():
        return status == int(expected)
    return 200 <= status < 300


def expect(ctx: RunContext, response: httpx.Response, expected: str = "2xx") -> None:
    """FlowFailed unless the answer's status is the one expected, quoting the start of its body."""
    if status_ok(expected, response.status_code):
        return
    preview = ctx.clip(response.text.strip(), 300)
    if preview:
        ctx.log(f"  answer: {preview}")
    raise FlowFailed(f"{response.request.url.host} answered HTTP {response.status_code}"
                     f" {response.reason_phrase} (expected {dict(STATUS_CHOICES)[expected]}).")


def auth_headers(ctx: RunContext, credential_id, header: str = "Authorization") -> dict:
    """Headers carrying a credential, built here so that no secret passes through a template:
    a token as "Bearer …", a login as Basic, a secret map as one header per name."""
    if credential_id in (None, ""):
        return {}
    secrets = ctx.secrets(credential_id)
    header = header or "Authorization"
    if "token" in secrets or "access_token" in secrets:
        token = secrets.get("token") or secrets.get("access_token")
        value = f"Bearer {token}" if header.lower() == "authorization" else token
        ctx.mark_secret(value)
        return {header: value}
    if "username" in secrets and "password" in secrets:
        pair = f"{secrets['username']}:{secrets['password']}".encode()
        value = "Basic " + base64.b64encode(pair).decode()
        ctx.mark_secret(value)
        ctx.mark_secret(value.split(" ", 1)[1])
        return {"Authorization": value}
    if "url" in secrets:
        raise FlowFailed("A webhook URL credential cannot be sent as a header.")
    return {str(name): str(value) for name, value in secrets.items()}
