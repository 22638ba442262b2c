"""The flow registry and its five flows: settings checked field by field, runs against real
loopback servers, secrets never in a log."""

import base64
import hashlib
import hmac
import json

import pytest

from app.accounts.models import Workspace
from app.automations import redact, templating, vault
from app.automations.flows import registry
from app.automations.flows.outgoing_webhook import HEADER
from app.automations.flows.registry import ConfigError, FlowFailed, FlowSkipped, RunContext
from app.automations.models import Credential
from app.db import connection
from app.mail.models import OutboundEmail
from tests.loopback import FakeCRM, Recorder

ALLOW = pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True)
TOKEN = "crm-tok-7d1e9a4b2c3f5e6d8a9b0c1d"
PASSWORD = "hunter2-but-longer"
SIGNING = "whsec-5b1f3c7a9e2d4f6a8c0e1b3d"
HOOK_PATH = "/services/T000/B000/XXXXsecretXXXX"


@pytest.fixture
def ws(app):
    """A workspace with one credential of each kind, inside an app context with a connection."""
    with app.app_context(), connection():
        ws = Workspace.create(name="Acme")
        other = Workspace.create(name="Rival")
        creds = {
            "token": vault.store(ws.id, "CRM", "CRM token", "api_token", {"token": TOKEN}),
            "login": vault.store(ws.id, "Legacy", "Legacy login", "login",
                                 {"username": "acme", "password": PASSWORD}),
            "map": vault.store(ws.id, "Mine", "Signing", "secret_map",
                               {"signing_secret": SIGNING, "X-Api-Key": "key-abcdef123456"}),
            "other": vault.store(other.id, "CRM", "Their token", "api_token", {"token": "theirs-1234"}),
        }
        ws.creds = {k: c.id for k, c in creds.items()}
        yield ws


def hook_credential(ws, url):
    return vault.store(ws.id, "Slack", "Team channel", "webhook_url", {"url": url}).id


def context(ws, config, payload=None, dry_run=False, trigger="manual"):
    return RunContext(ws.id, None, None, trigger, payload or {}, config, dry_run=dry_run,
                      automation_name="Lead sync")


def run(flow, ws, data, payload=None, dry_run=False):
    """Validate `data` as the screens would, then run the flow; returns the context."""
    config = registry.validate_config(flow, data, ws.id)
    ctx = context(ws, config, payload, dry_run)
    registry.get(flow).run(ctx)
    return ctx


LEAD = {"event": "visitor_left_email", "conversation_id": 42, "visitor_name": "Sam Sample",
        "visitor_email": "Sam@Example.com", "text": "Do you ship to Iasi?",
        "site": "Acme shop", "page_url": "https://acme.example/contact"}


# --- the registry ------------------------------------------------------------------------------


def test_the_five_flows_are_registered_in_menu_order():
    assert list(registry.FLOWS)[:5] == ["http_request", "outgoing_webhook", "email",
                                        "slack_webhook", "chat_lead_crm"]
    for flow in registry.FLOWS.values():
        assert flow.title and flow.description and flow.fields
        assert all(f.kind in registry.KINDS for f in flow.fields)


def test_an_unknown_flow_is_a_config_error_on_the_flow_field():
    with pytest.raises(ConfigError) as err:
        registry.get("nope")
    assert err.value.errors == {"flow": "Unknown flow: choose one from the list."}
    assert err.value.field == "flow" and err.value.status == 422


def test_a_field_of_an_unknown_kind_cannot_be_declared():
    with pytest.raises(ValueError):
        registry.Field("x", "X", "colour")


# --- settings checks -------------------------------------------------------------------------

GOOD_HTTP = {"method": "POST", "url": "https://api.example.com/leads",
             "headers": '{"X-Source": "lumnar"}', "body": '{"email": {{ event.visitor_email|tojson }}}'}


@pytest.mark.parametrize("flow, changes, field, message", [
    ("nope", {}, "flow", "Unknown flow"),
    ("http_request", {"url": ""}, "url", "URL is required."),
    ("http_request", {"url": "ftp://example.com/x"}, "url", "must start with https:// or http://"),
    ("http_request", {"url": "https://"}, "url", "no host"),
    ("http_request", {"url": "http://127.0.0.1:8000/"}, "url", "private, loopback or link-local"),
    ("http_request", {"url": "http://10.0.0.7/"}, "url", "private, loopback or link-local"),
    ("http_request", {"url": "http://169.254.169.254/latest"}, "url", "private, loopback"),
    ("http_request", {"url": "http://[::1]/"}, "url", "private, loopback or link-local"),
    ("http_request", {"url": "http://[::ffff:192.168.0.1]/"}, "url", "private, loopback"),
    ("http_request", {"url": "http://localhost:5000/"}, "url", "localhost"),
    ("http_request", {"url": "https://x.example/{{ event.id "}, "url", "Template error on line 1"),
    ("http_request", {"method": "BREW"}, "method", "Choose one of the options."),
    ("http_request", {"headers": "{not json"}, "headers", "does not render to valid JSON"),
    ("http_request", {"headers": '["a"]'}, "headers", "Headers must be a JSON object"),
    ("http_request", {"body": '{"email": {{ event.visitor_email }}}'}, "body",
     "does not render to valid JSON"),
    ("http_request", {"body": '{"a": "{% if %}"}'}, "body", "Template error on line 1"),
    ("http_request", {"credential": "999999"}, "credential", "Choose a credential of this workspace."),
    ("http_request", {"credential": "other"}, "credential", "Choose a credential of this workspace."),
    ("http_request", {"credential": "abc"}, "credential", "Choose a credential."),
    ("outgoing_webhook", {"credential": ""}, "credential", "Signing secret is required."),
    ("outgoing_webhook", {"credential": "login"}, "credential",
     "This needs a credential of kind: Other secrets (name = value lines) or API token."),
    ("email", {"to": "not-an-address"}, "to", "Enter a valid e-mail address"),
    ("email", {"to": "{{ event.text }}"}, "to", "Enter a valid e-mail address"),
    ("email", {"subject": "{{ unclosed"}, "subject", "Template error on line 1"),
    ("email", {"body": "   "}, "body", "Text is required."),
    ("slack_webhook", {"credential": "token"}, "credential", "Webhook URL"),
    ("chat_lead_crm", {"base_url": "http://192.168.1.20/api"}, "base_url", "private, loopback"),
    ("chat_lead_crm", {"extra": '{"a": {{ event.nothing }} }'}, "extra", "valid JSON"),
])
def test_bad_settings_are_refused_beside_their_field(ws, flow, changes, field, message):
    good = {
        "http_request": GOOD_HTTP,
        "outgoing_webhook": {"url": "https://hooks.example.com/in", "credential": ws.creds["map"]},
        "email": {"to": "team@example.com", "subject": "Lead", "body": "{{ event.text }}"},
        "slack_webhook": {"credential": "slack", "text": "Hi"},
        "chat_lead_crm": {"base_url": "https://crm.example.com/api", "credential": ws.creds["token"]},
    }.get(flow, {})
    data = dict(good)
    if flow == "slack_webhook":
        data["credential"] = hook_credential(ws, "https://hooks.slack.example/x")
    for key, value in changes.items():
        data[key] = ws.creds.get(value, value) if key == "credential" else value
    with pytest.raises(ConfigError) as err:
        registry.validate_config(flow, data, ws.id)
    assert field in err.value.errors, err.value.errors
    assert message in err.value.errors[field]


def test_every_bad_field_is_listed_at_once(ws):
    with pytest.raises(ConfigError) as err:
        registry.validate_config("http_request", {"method": "X", "url": "", "body": "{",
                                                  "credential": "0"}, ws.id)
    assert set(err.value.errors) == {"method", "url", "body", "credential"}
    assert err.value.message == err.value.errors[err.value.field]


def test_good_settings_come_back_cleaned(ws):
    config = registry.validate_config("http_request", dict(
        GOOD_HTTP, url="  https://api.example.com/c/{{ event.conversation_id }} ",
        credential=str(ws.creds["token"]), unknown="dropped"), ws.id)
    assert config == {
        "method": "POST", "url": "https://api.example.com/c/{{ event.conversation_id }}",
        "headers": '{"X-Source": "lumnar"}', "body": GOOD_HTTP["body"],
        "credential": ws.creds["token"], "auth_header": "Authorization", "expected_status": "2xx",
    }
    assert json.loads(json.dumps(config)) == config  # stored as JSON text


def test_optional_fields_may_be_left_empty(ws):
    config = registry.validate_config("http_request", {"url": "https://api.example.com/"}, ws.id)
    assert config["credential"] is None and config["headers"] == "" and config["method"] == "POST"


@ALLOW
def test_with_allow_private_a_loopback_url_passes_the_check(ws):
    config = registry.validate_config("http_request", {"url": "http://127.0.0.1:9/x"}, ws.id)
    assert config["url"] == "http://127.0.0.1:9/x"


# --- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "{{ event.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'] }}",
])
def test_python_internals_render_as_nothing(ws, source):
    assert context(ws, {}, payload={"a": 0}).render(source) == ""


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ 'x' * 100000000 }}",
    "{{ 9 ** 99999999 }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{{ event.update({'a': 1}) }}",
])
def test_templates_run_in_a_sandbox(ws, source):
    with pytest.raises(FlowFailed, match="Template error|too large|more than"):
        context(ws, {}, payload={"a": 0}).render(source)


def test_templates_see_the_event_the_automation_and_the_time(ws):
    ctx = context(ws, {}, payload=LEAD)
    out = ctx.render("{{ automation.name }}: {{ event.visitor_name }} {{ event.missing.deeper }}|"
                     "{{ now[:2] }}")
    assert out == "Lead sync: Sam Sample |20"
    assert ctx.render_json('{"t": {{ event.text|tojson }}, "n": {{ event.none|tojson }}}') == \
        {"t": "Do you ship to Iasi?", "n": None}
    with pytest.raises(FlowFailed, match="valid JSON"):
        ctx.render_json("{{ event.text }}")


def test_secrets_are_not_template_inputs(ws):
    ctx = context(ws, {})
    ctx.secrets(ws.creds["token"])
    assert ctx.render("{{ secrets }}{{ config }}{{ credential }}") == ""
    assert set(templating.context()) == {"event", "automation", "now"}


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, leak", [
    ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
    ("authorization: Basic YWNtZTpodW50ZXIy", "YWNtZTpodW50ZXIy"),
    ('{"Authorization": "Token 0123456789abcdef"}', "0123456789abcdef"),
    # Made up, and built here so that no key-shaped string sits in the repository.
    (f"key {'sk_' + 'live_'}Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2 here", f"{'sk_' + 'live_'}Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("xoxb-123456789012-abcdefghijkl", "xoxb-123456789012-abcdefghijkl"),
    ("aws AKIAIOSFODNN7EXAMPLE ok", "AKIAIOSFODNN7EXAMPLE"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
    ('{"access_token": "short-but-secret"}', "short-but-secret"),
    ("password=pa55word&user=sam", "pa55word"),
    ("api_key: k-123456", "k-123456"),
    ("sig=0123456789abcdef0123456789abcdef0123", "0123456789abcdef0123456789abcdef0123"),
    ('"checksum": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="', "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk"),
])
def test_common_token_shapes_are_redacted(text, leak):
    out = redact.redact(text)
    assert leak not in out and redact.MARK in out


def test_secret_values_are_redacted_in_every_written_form():
    secret = "p@ss word/with&odd\"chars"
    text = (f"plain {secret} | url https://x.example/?p=p%40ss%20word%2Fwith%26odd%22chars | "
            f"json {json.dumps(secret)}")
    out = redact.redact(text, [secret, "abc"])
    assert "p@ss" not in out and "p%40ss" not in out and "odd\\\"chars" not in out
    assert out.count(redact.MARK) == 3
    assert redact.redact("abc", ["abc"]) == "abc"  # too short to be told from ordinary text


def test_plain_log_lines_are_left_alone():
    line = "12:00:01 → POST https://api.example.com/leads\n← 201 Created (42 bytes)"
    assert redact.redact(line) == line


def test_cap_cuts_at_64_kb_on_a_character_boundary():
    text = "é" * 70000
    out = redact.cap(text)
    assert len(out.encode()) <= 65536 and out.endswith("passed 64 KB.")
    assert redact.cap("short") == "short"


def test_the_run_log_is_capped(ws):
    ctx = context(ws, {})
    for i in range(2000):
        ctx.log(f"line {i} " + "x" * 100)
    ctx.log("y" * 10000)
    text = ctx.log_text()
    assert len(text.encode()) <= 65536 and "cut here" in text


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_come_from_the_workspace_only_and_mark_the_credential_used(ws):
    ctx = context(ws, {})
    assert ctx.secrets(ws.creds["token"]) == {"token": TOKEN}
    assert Credential.get_by_id(ws.creds["token"]).last_used_at is not None
    with pytest.raises(FlowFailed, match="no longer exists"):
        ctx.secrets(ws.creds["other"])
    with pytest.raises(FlowFailed, match="no longer exists"):
        ctx.secrets(None)
    ctx.log(f"oops {TOKEN} and {PASSWORD}")
    assert TOKEN not in ctx.log_text() and "CRM token" in ctx.log_text()
    assert ctx.redact(f"error with {TOKEN}") == "error with [redacted]"


# --- 1. HTTP request ---------------------------------------------------------------------------


@ALLOW
def test_http_request_sends_templated_url_headers_and_body_with_the_token(ws):
    with Recorder(status=201, body=b'{"id": 7}') as srv:
        ctx = run("http_request", ws, {
            "method": "PUT", "url": srv.url("/leads/{{ event.conversation_id }}"),
            "headers": '{"X-Site": {{ event.site|tojson }}}',
            "body": '{"email": {{ event.visitor_email|tojson }}, "n": {{ event.conversation_id }}}',
            "credential": ws.creds["token"], "expected_status": "2xx"}, payload=LEAD)
    [got] = srv.requests
    assert (got.method, got.path) == ("PUT", "/leads/42")
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert got.headers["X-Site"] == "Acme shop"
    assert got.json() == {"email": "Sam@Example.com", "n": 42}
    log = ctx.log_text()
    assert TOKEN not in log and "Authorization: [redacted]" in log
    assert "← 201 Created" in log and '"id": 7' in log


@ALLOW
def test_http_request_sends_a_login_as_basic_and_a_token_under_another_header(ws):
    with Recorder() as srv:
        ctx = run("http_request", ws, {"method": "GET", "url": srv.url("/a"),
                                       "credential": ws.creds["login"]})
        ctx2 = run("http_request", ws, {"method": "GET", "url": srv.url("/b"),
                                        "credential": ws.creds["token"], "auth_header": "X-Api-Key"})
        run("http_request", ws, {"method": "GET", "url": srv.url("/c"), "credential": ws.creds["map"]})
    basic = base64.b64encode(f"acme:{PASSWORD}".encode()).decode()
    assert srv.requests[0].headers["Authorization"] == f"Basic {basic}"
    assert srv.requests[1].headers["X-Api-Key"] == TOKEN
    assert srv.requests[2].headers["X-Api-Key"] == "key-abcdef123456"
    for text in (ctx.log_text(), ctx2.log_text()):
        assert basic not in text and PASSWORD not in text and TOKEN not in text


@ALLOW
@pytest.mark.parametrize("status, expected, ok", [
    (500, "2xx", False), (404, "2xx", False), (302, "2xx", False), (302, "2xx_3xx", True),
    (201, "200", False), (200, "200", True), (503, "any", True),
])
def test_http_request_checks_the_answer_status(ws, status, expected, ok):
    with Recorder(status=status, body=b"upstream says no") as srv:
        data = {"method": "GET", "url": srv.url("/"), "expected_status": expected}
        if ok:
            run("http_request", ws, data)
        else:
            with pytest.raises(FlowFailed, match=f"answered HTTP {status}"):
                run("http_request", ws, data)


@ALLOW
def test_a_dry_run_sends_nothing_and_logs_what_it_would_send(ws):
    with Recorder() as srv:
        ctx = run("http_request", ws, {"url": srv.url("/x"), "body": '{"a": 1}',
                                       "credential": ws.creds["token"]}, dry_run=True)
    assert srv.requests == []
    log = ctx.log_text()
    assert "dry run: not sent" in log and '"a":1' in log and TOKEN not in log


def test_a_dry_run_still_refuses_a_private_address(ws):
    ctx = context(ws, {}, dry_run=True)
    with pytest.raises(FlowFailed, match="private, loopback or link-local"):
        ctx.http("GET", "http://10.0.0.1/")


@ALLOW
def test_a_header_that_cannot_be_sent_fails_the_attempt_with_a_message(ws):
    with Recorder() as srv:
        ctx = context(ws, {})
        with pytest.raises(FlowFailed):
            ctx.http("GET", srv.url(), headers={"X-Bad": "line\nbreak"})
        with pytest.raises(FlowFailed):
            ctx.http("GET", "http://exa mple.com/")
    assert srv.requests == []


@ALLOW
def test_http_request_logs_that_a_large_answer_was_cut(ws):
    with Recorder(body=b"z" * (2 * 1024 * 1024)) as srv:
        ctx = run("http_request", ws, {"method": "GET", "url": srv.url("/big")})
    assert "passed 1024 KB and was cut" in ctx.log_text()


def test_http_request_refuses_a_private_address_even_when_it_comes_from_the_event(ws):
    ctx = context(ws, {"method": "GET", "url": "https://{{ event.host }}/x", "headers": "",
                       "body": "", "credential": None, "auth_header": "", "expected_status": "2xx"},
                  payload={"host": "169.254.169.254"})
    with pytest.raises(registry.FlowFailed, match="private, loopback or link-local"):
        registry.get("http_request").run(ctx)


# --- 2. outgoing webhook -----------------------------------------------------------------------


@ALLOW
def test_outgoing_webhook_posts_the_event_signed_and_the_receiver_can_verify_it(ws):
    with Recorder() as srv:
        ctx = run("outgoing_webhook", ws, {"url": srv.url("/in"), "credential": ws.creds["map"]},
                  payload=LEAD)
    [got] = srv.requests
    # The receiving side: recompute the HMAC over "<t>.<raw body>" with the shared secret.
    parts = dict(item.split("=", 1) for item in got.headers[HEADER].split(","))
    expected = hmac.new(SIGNING.encode(), parts["t"].encode() + b"." + got.body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    document = got.json()
    assert document["data"] == LEAD and document["trigger"] == "manual"
    assert document["automation"] == {"id": None, "name": "Lead sync"}
    assert got.headers["Content-Type"] == "application/json"
    # A tampered body would not verify.
    forged = hmac.new(SIGNING.encode(), parts["t"].encode() + b"." + got.body + b" ",
                      hashlib.sha256).hexdigest()
    assert forged != parts["v1"]
    assert SIGNING not in ctx.log_text()


@ALLOW
def test_outgoing_webhook_can_sign_with_an_api_token(ws):
    with Recorder() as srv:
        run("outgoing_webhook", ws, {"url": srv.url("/in"), "credential": ws.creds["token"]})
    [got] = srv.requests
    parts = dict(item.split("=", 1) for item in got.headers[HEADER].split(","))
    mac = hmac.new(TOKEN.encode(), f"{parts['t']}.".encode() + got.body, hashlib.sha256)
    assert parts["v1"] == mac.hexdigest()


@ALLOW
def test_outgoing_webhook_fails_when_the_endpoint_fails(ws):
    with Recorder(status=500) as srv, pytest.raises(FlowFailed, match="HTTP 500"):
        run("outgoing_webhook", ws, {"url": srv.url("/in"), "credential": ws.creds["map"]})


# --- 3. e-mail ---------------------------------------------------------------------------------


def test_email_goes_through_the_outbox_to_smtp(ws, smtp):
    ctx = run("email", ws, {"to": "{{ event.visitor_email }}",
                            "subject": "Thanks,\n{{ event.visitor_name }}\r\nBcc: evil@example.com",
                            "body": "You asked: {{ event.text }}"}, payload=LEAD)
    row = OutboundEmail.get()
    assert row.to == "Sam@Example.com"
    assert row.subject == "Thanks, Sam Sample Bcc: evil@example.com"  # one line, no new header
    assert "You asked: Do you ship to Iasi?" in row.text_body
    msg = smtp.wait_for("Sam@Example.com", "Thanks")
    assert msg["Bcc"] is None
    assert "queued in the outbox" in ctx.log_text()


def test_email_dry_run_queues_nothing(ws):
    ctx = run("email", ws, {"to": "team@example.com", "subject": "S", "body": "B"}, dry_run=True)
    assert OutboundEmail.select().count() == 0
    assert "dry run: not sent" in ctx.log_text()


def test_email_without_a_recipient_for_this_event_is_skipped(ws):
    config = registry.validate_config("email", {"to": "{{ event.visitor_email }}", "subject": "S",
                                                "body": "B"}, ws.id)
    with pytest.raises(FlowSkipped):
        registry.get("email").run(context(ws, config, payload={"text": "no address"}))
    with pytest.raises(FlowFailed, match="not one e-mail address"):
        registry.get("email").run(context(ws, config, payload={"visitor_email": "a@b.c, d@e.f"}))
    assert OutboundEmail.select().count() == 0


# --- 4. Slack-style webhook --------------------------------------------------------------------


@ALLOW
def test_slack_webhook_posts_the_text_and_never_logs_the_secret_url(ws):
    with Recorder(body=b"ok", headers={"Content-Type": "text/plain"}) as srv:
        url = srv.url(HOOK_PATH)
        ctx = run("slack_webhook", ws, {"credential": hook_credential(ws, url),
                                        "text": "New chat from {{ event.visitor_name }}: {{ event.text }}"},
                  payload=LEAD)
    [got] = srv.requests
    assert got.path == HOOK_PATH
    assert got.json() == {"text": "New chat from Sam Sample: Do you ship to Iasi?"}
    assert "XXXXsecretXXXX" not in ctx.log_text() and "[redacted]" in ctx.log_text()


@ALLOW
def test_slack_webhook_failure_does_not_leak_the_url_in_the_error(ws):
    with Recorder(status=404) as srv:
        url = srv.url(HOOK_PATH)
        with pytest.raises(FlowFailed) as err:
            run("slack_webhook", ws, {"credential": hook_credential(ws, url), "text": "hi"})
    assert "XXXXsecretXXXX" not in str(err.value)


# --- 5. chat lead → CRM ------------------------------------------------------------------------


@ALLOW
def test_a_chat_lead_becomes_one_crm_contact_and_a_second_lead_updates_it(ws):
    with FakeCRM(TOKEN) as crm:
        data = {"base_url": crm.url("/api"), "credential": ws.creds["token"],
                "extra": '{"source": "website chat", "first_message": {{ event.text|tojson }}}'}
        # Someone whose address merely contains Sam's, so a fuzzy search finds both.
        crm.contacts[1] = {"id": 1, "email": "pam@example.com.au", "name": "Pam"}
        first = run("chat_lead_crm", ws, data, payload=LEAD)
        again = dict(LEAD, visitor_email="sam@EXAMPLE.com", visitor_name="Samuel Sample",
                     text="Still there?")
        second = run("chat_lead_crm", ws, data, payload=again)
        calls = [(r.method, r.path.split("?")[0]) for r in crm.requests]
    assert calls == [("GET", "/api/contacts"), ("POST", "/api/contacts"),
                     ("GET", "/api/contacts"), ("PATCH", "/api/contacts/100")]
    assert crm.requests[0].path == "/api/contacts?email=sam@example.com"
    sams = [c for c in crm.contacts.values() if c["email"] == "sam@example.com"]
    assert len(sams) == 1
    assert sams[0]["name"] == "Samuel Sample" and sams[0]["first_message"] == "Still there?"
    assert sams[0]["source"] == "website chat" and sams[0]["page_url"] == LEAD["page_url"]
    assert "creating one" in first.log_text() and "updating it" in second.log_text()
    assert TOKEN not in first.log_text() + second.log_text()


@ALLOW
def test_the_visitor_may_be_nested_in_the_event(ws):
    with FakeCRM(TOKEN) as crm:
        run("chat_lead_crm", ws, {"base_url": crm.url("/api"), "credential": ws.creds["token"]},
            payload={"visitor": {"name": "Ana", "email": "ana@example.com"}})
    assert [c["email"] for c in crm.contacts.values()] == ["ana@example.com"]


@ALLOW
def test_a_chat_event_without_an_email_is_skipped_and_the_crm_hears_nothing(ws):
    with FakeCRM(TOKEN) as crm:
        with pytest.raises(FlowSkipped, match="no visitor e-mail"):
            run("chat_lead_crm", ws, {"base_url": crm.url("/api"), "credential": ws.creds["token"]},
                payload={"visitor_name": "Anonymous", "text": "hi"})
    assert crm.requests == []


@ALLOW
def test_a_wrong_crm_token_fails_the_attempt(ws):
    with FakeCRM("the-right-token-123") as crm:
        with pytest.raises(FlowFailed, match="HTTP 401"):
            run("chat_lead_crm", ws, {"base_url": crm.url("/api"), "credential": ws.creds["token"]},
                payload=LEAD)
        assert [r.method for r in crm.requests] == ["GET"] and crm.contacts == {}
