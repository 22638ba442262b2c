"""Jinja templates in automation settings, rendered in a sandbox from the trigger's data only."""

import json
from datetime import UTC, datetime

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# Rendered output is capped: a loop in a template must not build a huge request body.
MAX_OUTPUT = 256 * 1024

# What a template sees when it is checked at save time: the keys chat events carry, so that
# "{{ event.visitor_email }}" renders to something real and a JSON template can be parsed.
SAMPLE_EVENT = {
    "event": "visitor_left_email",
    "conversation_id": 1,
    "visitor_name": "Sam Sample",
    "visitor_email": "sam@example.com",
    "visitor": {"name": "Sam Sample", "email": "sam@example.com"},
    "text": "Hello, is the shop open on Sunday?",
    "site": "Example shop",
    "site_name": "Example shop",
    "page_url": "https://shop.example.com/contact",
}


def _tojson(value, indent=None):
    """Plain JSON (the output is a request body, not HTML); a missing value is null."""
    if isinstance(value, Undefined):
        return "null"
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


class _Environment(ImmutableSandboxedEnvironment):
    """No attribute of Python internals, no mutation of the data, no HTML escaping, and no
    arithmetic that builds a gigantic string or number in one step ("x" * 10**9)."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
            counts = [v for v in (left, right) if isinstance(v, int)]
            if sizes and counts and sizes[0] * max(counts[0], 0) > MAX_OUTPUT:
                raise SecurityError("result too large")
        return super().call_binop(context, operator, left, right)


# Missing keys render as empty (an event may lack a field) and chain without raising.
env = _Environment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=False)
env.filters["tojson"] = _tojson
env.policies["json.dumps_function"] = _tojson


class RenderError(ValueError):
    """A template that cannot be parsed or rendered; the message says where and why."""


def check_syntax(source: str) -> None:
    try:
        env.parse(source)
    except TemplateSyntaxError as exc:
        raise RenderError(f"Template error on line {exc.lineno}: {exc.message}") from None


def context(event: dict | None = None, automation: dict | None = None) -> dict:
    return {
        "event": event if event is not None else SAMPLE_EVENT,
        "automation": automation or {"id": 0, "name": "Sample automation"},
        "now": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }


def render(source: str, variables: dict) -> str:
    """Render `source` with `variables`; RenderError on bad syntax, a sandbox refusal, or
    output past MAX_OUTPUT."""
    try:
        out = env.from_string(source).render(**variables)
    except TemplateSyntaxError as exc:
        raise RenderError(f"Template error on line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:  # includes SecurityError from the sandbox
        raise RenderError(f"Template error: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise RenderError(f"Template error: {type(exc).__name__}: {exc}") from None
    if len(out) > MAX_OUTPUT:
        raise RenderError(f"The template rendered to more than {MAX_OUTPUT // 1024} KB.")
    return out


def render_json(source: str, variables: dict):
    """Render, then parse as JSON; RenderError saying where the JSON broke."""
    out = render(source, variables)
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise RenderError(
            f"It does not render to valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}). Put text values in quotes or use |tojson.") from None
