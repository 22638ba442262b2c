"""The flow registry: each flow's settings schema, their validation, and the context a run gets."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from email_validator import EmailNotValidError, validate_email

from app.automations import net, redact, templating, vault
from app.automations.models import Automation, Credential
from app.errors import RuleError
from app.mail import service as mail
from app.paging import whole_number

FlowFailed = net.FlowFailed  # one class, so that a refused address is a failed attempt too

KINDS = ("text", "textarea", "url", "template", "json_template", "select", "credential", "email",
         "int")
MAX_TEXT = 8000  # longest setting kept, whatever its kind
MAX_LOG_LINE = 2000  # a log line longer than this is shortened: one line must not fill the log
MAX_LOG_BUFFER = 256 * 1024  # lines kept in memory before redaction and the 64 KB cap


class ConfigError(RuleError):
    """Settings refused; `.errors` maps each bad field's name to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        name, message = next(iter(self.errors.items()))
        super().__init__(message, field=name)


class FlowSkipped(Exception):
    """Nothing to do for this event (e.g. it carries no e-mail address); not a failure."""


@dataclass(frozen=True)
class Field:
    """One setting of a flow. `choices` (for select) are (value, label) pairs or plain values;
    `credential_kinds` (for credential) are Credential.KINDS keys, empty meaning any.
    url and email fields may hold Jinja expressions ({{ event.visitor_email }})."""

    name: str
    label: str
    kind: str
    required: bool = True
    default: str = ""
    choices: tuple = ()
    help: str = ""
    credential_kinds: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown field kind {self.kind!r}")

    @property
    def options(self) -> list[tuple[str, str]]:
        return [(c[0], c[1]) if isinstance(c, tuple | list) else (c, c) for c in self.choices]


@dataclass(frozen=True)
class Flow:
    """A flow: its schema and its `run(context)`. `check(cleaned) -> {field: message}` adds
    rules that span fields or go beyond a kind; `max_attempts` overrides the automation's."""

    name: str
    title: str
    description: str
    fields: tuple[Field, ...]
    run: Callable[["RunContext"], None]
    max_attempts: int | None = None
    check: Callable[[dict], dict[str, str]] | None = field(default=None, compare=False)


FLOWS: dict[str, Flow] = {}


def register(flow: Flow) -> Flow:
    FLOWS[flow.name] = flow
    return flow


def get(name: str) -> Flow:
    try:
        return FLOWS[name]
    except KeyError:
        raise ConfigError({"flow": "Unknown flow: choose one from the list."}) from None


# --- validation ------------------------------------------------------------------------------


def _templated(value: str) -> bool:
    return "{{" in value or "{%" in value


def _sample(value: str) -> str:
    """A url or e-mail setting as it would render with a sample chat event."""
    return templating.render(value, templating.context()) if _templated(value) else value


def _clean(f: Field, raw, workspace_id: int):
    """The cleaned value of one field, or ValueError with the message to show beside it."""
    value = "" if raw is None else str(raw)
    if f.kind not in ("textarea", "template", "json_template"):
        value = value.strip()
    if len(value) > MAX_TEXT:
        raise ValueError(f"Keep it under {MAX_TEXT} characters.")
    if value == "" or (f.kind in ("template", "json_template", "textarea") and not value.strip()):
        if f.required:
            raise ValueError(f"{f.label} is required.")
        return None if f.kind in ("credential", "int") else ""
    try:
        if f.kind in ("template", "json_template", "url", "email"):
            templating.check_syntax(value)
        if f.kind == "json_template":
            templating.render_json(value, templating.context())
        elif f.kind == "url":
            problem = net.literal_problem(_sample(value))
            if problem:
                raise ValueError(problem)
        elif f.kind == "email":
            try:
                validate_email(_sample(value), check_deliverability=False)
            except EmailNotValidError:
                raise ValueError("Enter a valid e-mail address, like name@example.com.") from None
    except templating.RenderError as exc:
        raise ValueError(str(exc)) from None
    if f.kind == "select":
        if value not in [v for v, _label in f.options]:
            raise ValueError("Choose one of the options.")
    elif f.kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise ValueError("Enter a whole number.") from None
        if number < 0:
            raise ValueError("Enter zero or more.")
        return number
    elif f.kind == "credential":
        cred_id = whole_number(str(value))  # None also for a number no row can have
        if cred_id is None:
            raise ValueError("Choose a credential.")
        cred = Credential.get_or_none((Credential.id == cred_id)
                                      & (Credential.workspace == workspace_id))
        if cred is None:
            raise ValueError("Choose a credential of this workspace.")
        if f.credential_kinds and cred.kind not in f.credential_kinds:
            wanted = " or ".join(Credential.KINDS[k] for k in f.credential_kinds)
            raise ValueError(f"This needs a credential of kind: {wanted}.")
        return cred_id
    return value


def validate_config(flow_name: str, data: dict, workspace_id: int) -> dict:
    """The cleaned settings for `flow_name` (JSON-able), or ConfigError naming every bad field.
    Keys not in the flow's schema are dropped."""
    flow = get(flow_name)
    cleaned, errors = {}, {}
    for f in flow.fields:
        raw = data.get(f.name, f.default) if data is not None else f.default
        try:
            cleaned[f.name] = _clean(f, raw, workspace_id)
        except ValueError as exc:
            errors[f.name] = str(exc)
    if not errors and flow.check:
        errors.update(flow.check(cleaned) or {})
    if errors:
        raise ConfigError(errors)
    return cleaned


# --- the run context -------------------------------------------------------------------------


def _strings(value):
    """Every string inside a revealed secret (a dict of names to values, maybe nested)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


class RunContext:
    """What a flow's `run` gets: the trigger's data, its settings, and the only ways out
    (HTTP through the SSRF guard, mail through the outbox), each logged. Every secret it hands
    out is remembered, so that the log (and any error text passed through `redact`) never
    holds one.

    `secrets` are every secret value of the workspace (read from the vault when not given):
    the log is kept free of all of them, in every common encoding, whichever flow wrote it."""

    def __init__(self, workspace_id: int, automation_id: int | None, run_id: int | None,
                 trigger: str, payload: dict, config: dict, dry_run: bool = False,
                 automation_name: str | None = None, secrets: list[str] | None = None):
        self.workspace_id = workspace_id
        self.automation_id = automation_id
        self.run_id = run_id
        self.trigger = trigger
        self.payload = payload or {}
        self.config = config or {}
        self.dry_run = dry_run
        self._automation_name = automation_name
        self._lines: list[str] = []
        self._size = 0
        if secrets is None:
            secrets = vault.secret_values(workspace_id)
        # The forms of every secret are worked out once here, for every line of the run.
        self.redactor = redact.Redactor(secrets)

    # logging

    def log(self, msg: str) -> None:
        if self._size > MAX_LOG_BUFFER:
            return  # already far past what will be kept
        # Redacted before it is cut: a cut must never leave part of a secret behind.
        msg = self.redactor.clip(str(msg), MAX_LOG_LINE, note=" … ({rest} more characters)")
        line = f"{datetime.now(UTC):%H:%M:%S} {msg}"
        self._lines.append(line)
        self._size += len(line) + 1

    def mark_secret(self, value: str) -> None:
        """Treat `value` as a secret too (e.g. a value derived from one, like a Basic header)."""
        self.redactor.add(value)

    def redact(self, text: str) -> str:
        """`text` without any secret of the workspace or this run, or any token shape."""
        return self.redactor.redact(text)

    def clip(self, text: str, limit: int) -> str:
        """At most `limit` characters of `text` for the log, redacted before it is cut. Flows
        quote answers through this, never by slicing them themselves."""
        return self.redactor.clip(text, limit)

    def log_text(self) -> str:
        # Redacted again as a whole: a value marked secret after a line was logged counts too.
        return redact.cap("\n".join(self._lines), secrets=self.redactor)

    # secrets

    def secrets(self, credential_id) -> dict:
        cred = None
        if credential_id not in (None, ""):
            cred = Credential.get_or_none((Credential.id == int(credential_id))
                                          & (Credential.workspace == self.workspace_id))
        if cred is None:
            raise FlowFailed("The credential this automation uses no longer exists.")
        values = vault.reveal(cred)
        for value in _strings(values):
            self.mark_secret(value)
        self.log(f"Using credential “{cred.label}” ({cred.platform}).")
        return values

    # templates

    @property
    def automation(self) -> dict:
        if self._automation_name is None:
            row = (Automation.get_or_none(Automation.id == self.automation_id)
                   if self.automation_id else None)
            self._automation_name = row.name if row else ""
        return {"id": self.automation_id, "name": self._automation_name}

    def _variables(self) -> dict:
        return templating.context(self.payload, self.automation)

    def render(self, template: str) -> str:
        try:
            return templating.render(template or "", self._variables())
        except templating.RenderError as exc:
            raise FlowFailed(str(exc)) from None

    def render_json(self, template: str):
        try:
            return templating.render_json(template, self._variables())
        except templating.RenderError as exc:
            raise FlowFailed(str(exc)) from None

    # the ways out

    def http(self, method: str, url: str, headers: dict | None = None, json=None,
             content: bytes | str | None = None) -> httpx.Response:
        method = method.upper()
        self.log(f"→ {method} {url}")
        if headers:
            self.log("  headers: " + ", ".join(f"{k}: {v}" for k, v in headers.items()))
        if json is not None or content is not None:
            body = content if content is not None else _json_text(json)
            if isinstance(body, bytes):
                body = body.decode(errors="replace")
            self.log(f"  body: {self.clip(body, 1000)}")
        if self.dry_run:
            # A dry run still says no to an address a real run could not reach (judged on the
            # URL alone: it resolves nothing and sends nothing).
            problem = net.literal_problem(url)
            if problem:
                error = net.BlockedAddress if "may not" in problem else FlowFailed
                raise error(self.redact(problem))
            self.log("  dry run: not sent; pretending the answer was 200 OK.")
            return httpx.Response(200, content=b"", request=httpx.Request(method, url))
        try:
            response = net.request(method, url, headers=headers, json=json, content=content)
        except FlowFailed as exc:
            raise type(exc)(self.redact(str(exc))) from None
        self.log(f"← {response.status_code} {response.reason_phrase} "
                 f"({len(response.content)} bytes)")
        if response.extensions.get(net.TRUNCATED):
            self.log(f"  the answer passed {net.MAX_BODY // 1024} KB and was cut there.")
        return response

    def send_mail(self, to: str, subject: str, text: str) -> None:
        self.log(f"✉ to {to}: {subject}")
        if self.dry_run:
            self.log("  dry run: not sent.\n" + self.clip(text, 1000))
            return
        mail.send(to, "automation_message", subject, text=text,
                  automation_name=self.automation["name"], workspace_id=self.workspace_id)
        self.log("  queued in the outbox.")


def _json_text(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
