"""No piece of a credential reaches a run log or a run's error, whatever the encoding and
wherever the cut falls: text is redacted whole before it is cut, every common encoding of
every secret of the workspace is redacted, and a run of 8 or more characters of a secret
left at a cut (by an earlier cut) is redacted too.

The table puts each encoding of a secret so that the cut falls inside it, and checks that no
8 characters of it survive; the flow tests run real automations against a real endpoint on
loopback and read the log as stored."""

import base64
import hashlib
import html
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from app.automations import redact, service, vault
from app.automations.flows import registry
from app.automations.models import AutomationRun
from app.db import connection
from tests.chat_fixtures import workspace_id_of
from tests.loopback import Recorder

LIMIT = 500
RUN = 8  # the promise: no 8 characters of a secret in a row, in any form

# Every character some encoding treats specially: "/" "+" ":" "!" "'" "~" space (URLs),
# '"' "/" and non-ASCII (JSON), "<" ">" "&" (HTML, HTML-safe JSON).
ODD = "Tq7/vL+x\"W<e>&z9:Rp ü~K'm4!Zd?N~~"
# An API token for the real runs, made at run time (no secret-shaped string is committed):
# standard base64, so it has "+", "/" or "=" and its URL and JSON forms differ from it.
TOKEN = base64.b64encode(hashlib.sha256(b"lumnar redaction forms").digest()).decode()


def pieces(value: str) -> set[str]:
    """Every run of RUN characters of `value`: none may be found in a stored text."""
    return {value[i:i + RUN] for i in range(len(value) - RUN + 1)}


def leaks(text: str, value: str) -> list[str]:
    return sorted(piece for piece in pieces(value) if piece in text)


def stream(secret: str, before: bytes, urlsafe=False) -> tuple[str, str]:
    """`secret` base64-encoded inside a longer string (`before` it, "zz" after), and the part
    of the encoding that comes from the secret alone: the first and last group of four
    characters share bits with the neighbours and are left out."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    text = encode(before + secret.encode() + b"zz").decode()
    return text, text[4:-4]


def lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def forms(secret: str) -> dict[str, tuple[str, str]]:
    """name → (the text an endpoint might answer, the part that must not leak)."""
    raw = secret.encode()
    table = {
        "raw": secret,
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "percent, all reserved": quote(secret, safe=""),
        "percent, lower-case escapes": lower_escapes(quote(secret, safe="")),
        "percent, URL path": quote(secret),
        "percent, form (+ for space)": quote_plus(secret, safe=""),
        "percent, encodeURIComponent": quote(secret, safe="!'()*"),
        "JSON": json.dumps(secret)[1:-1],
        "JSON, not ASCII-only": json.dumps(secret, ensure_ascii=False)[1:-1],
        "JSON, slash escaped": json.dumps(secret)[1:-1].replace("/", "\\/"),
        "JSON, HTML-safe": json.dumps(secret)[1:-1].replace("<", "\\u003c")
        .replace(">", "\\u003e").replace("&", "\\u0026"),
        "HTML": html.escape(secret),
    }
    found = {name: (text, text) for name, text in table.items()}
    for offset in (0, 1, 2):
        for urlsafe in (False, True):
            name = f"base64{'url' if urlsafe else ''} at offset {offset} of a stream"
            found[name] = stream(secret, b"a" * offset, urlsafe)
    return found


FORMS = forms(ODD)


def test_the_table_holds_distinct_encodings():
    # Each row tests something: the odd characters make every encoding differ from the others.
    assert len({text for text, _ in FORMS.values()}) == len(FORMS)


@pytest.mark.parametrize("name", FORMS)
def test_no_piece_of_a_secret_survives_a_cut_inside_any_of_its_forms(name):
    text, leak = FORMS[name]
    # Every place the cut (a little before the limit, to leave room for " …") can fall.
    for offset in range(1, len(text) + 12):
        before = "x" * (LIMIT - offset)
        out = redact.clip(before + text + " and more after it", [ODD], LIMIT)
        assert len(out) <= LIMIT
        assert not leaks(out, leak) and not leaks(out, ODD), (offset, out[-60:])
        assert out.count("[") == out.count(redact.MARK)  # never cut inside a mark


@pytest.mark.parametrize("name", FORMS)
def test_a_piece_of_a_form_left_by_an_earlier_cut_is_redacted_at_either_end(name):
    text, leak = FORMS[name]
    # The text was cut before (a flow's own slicing, an answer cut at 1 MB) inside the form,
    # so the form is not whole any more, and the cut here falls inside what is left of it.
    piece = text[:len(text) // 2 + RUN]
    out = redact.clip("x" * (LIMIT - 20) + piece, [ODD], LIMIT)
    assert len(out) <= LIMIT and not leaks(out, leak), out[-60:]
    assert redact.MARK in out
    # The start was cut off before: the text begins inside the form, and is cut at its end.
    piece = text[len(text) // 2 - RUN:]
    out = redact.clip(piece + ". " + "x" * LIMIT, [ODD], LIMIT)
    assert len(out) <= LIMIT and not leaks(out, leak), out[:60]
    assert out.startswith(redact.MARK)


@pytest.mark.parametrize("name", ["raw", "base64", "hex", "percent, all reserved", "JSON"])
def test_the_64_kb_cap_counts_bytes_and_still_redacts_first(name):
    text, leak = FORMS[name]
    limit = 4096
    for offset in (1, len(text) // 2, len(text) - 1):
        note = len(f"\n… log cut here: it passed {limit // 1024} KB.".encode())
        before = "é" * ((limit - note - offset) // 2)
        out = redact.cap(before + text + "é" * limit, limit, [ODD])
        assert len(out.encode()) <= limit and out.endswith("passed 4 KB.")
        assert not leaks(out, leak) and not leaks(out, ODD)


def test_text_that_is_not_cut_keeps_its_ordinary_words():
    line = "← 200 OK (12 bytes) https://api.example.com/v1/items?page=2"
    assert redact.clip(line, [ODD, TOKEN], LIMIT) == line
    assert redact.clip("x" * 600, [ODD, TOKEN], LIMIT) == "x" * (LIMIT - 6) + " …"


def test_two_secrets_that_overlap_in_a_text_are_both_redacted_whole():
    first, second = "AAAA1111BBBB2222", "BBBB2222CCCC3333"
    out = redact.redact("see AAAA1111BBBB2222CCCC3333 here", [first, second])
    assert out == f"see {redact.MARK} here"


# --- real runs against a real endpoint -------------------------------------------------------


@pytest.fixture
def ws(app, user):
    with app.app_context(), connection():
        yield workspace_id_of(user.email)


def token_forms() -> dict[str, tuple[str, str]]:
    found = forms(TOKEN)
    found["base64 of a Basic pair"] = stream(TOKEN, b"user:")  # offset 2 of its group
    return found


TOKEN_FORMS = token_forms()


@pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True)
def test_the_reported_answer_of_488_x_then_the_token_leaves_no_piece_of_it(ws):
    credential = vault.store(ws, "CRM", "CRM token", "api_token", {"token": TOKEN})
    with Recorder(body=("x" * 488 + " " + TOKEN).encode()) as endpoint:
        automation = service.create_automation(
            ws, name="Echo", flow="http_request", trigger="manual", max_attempts=1,
            config={"method": "POST", "url": endpoint.url("/echo"), "body": "",
                    "credential": str(credential.id), "expected_status": "2xx"})
        run = service.run_now(automation)
    assert endpoint.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    stored = AutomationRun.get_by_id(run.id)
    assert stored.status == "succeeded"
    assert "answer: " in stored.log
    assert not leaks(stored.log, TOKEN), stored.log[-200:]


@pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True)
@pytest.mark.parametrize("name", TOKEN_FORMS)
@pytest.mark.parametrize("status, cut", [(200, 500), (503, 300)])  # the answer, the failure quote
def test_an_endpoint_echoing_the_token_in_any_form_at_the_cut_leaves_no_piece_of_it(
        ws, name, status, cut):
    text, leak = TOKEN_FORMS[name]
    credential = vault.store(ws, "CRM", "CRM token", "api_token", {"token": TOKEN})
    # Words before it, not one long run: a long run after "answer:" is redacted as a token shape.
    answer = ("x " * cut)[:cut - len(text) // 2] + text + " the end"
    with Recorder(status=status, body=answer.encode()) as endpoint:
        automation = service.create_automation(
            ws, name="Echo", flow="http_request", trigger="manual", max_attempts=1,
            config={"method": "POST", "url": endpoint.url("/echo"), "body": "",
                    "credential": str(credential.id), "expected_status": "2xx"})
        run = service.run_now(automation)
    stored = AutomationRun.get_by_id(run.id)
    assert stored.status == ("succeeded" if status == 200 else "failed")
    assert not leaks(stored.log, leak) and not leaks(stored.log, TOKEN), stored.log[-300:]
    assert "answer: x x x" in stored.log


@pytest.fixture
def echo_flow():
    """A flow, registered through the registry's own API for one test, that puts the token's
    forms where the log line and the error are cut, as a careless flow could."""
    def run(ctx):
        line, error = ctx.config["line"], ctx.config["error"]
        ctx.log(line)
        raise registry.FlowFailed(error)

    flow = registry.register(registry.Flow(name="test_echo", title="Echo", description="echo",
                                           fields=(), run=run))
    yield flow
    registry.FLOWS.pop(flow.name, None)


@pytest.mark.parametrize("name", ["raw", "base64", "base64url at offset 1 of a stream", "hex",
                                  "percent, all reserved", "JSON, slash escaped"])
def test_a_long_log_line_and_a_long_error_are_cut_after_redaction(ws, echo_flow, name):
    text, leak = TOKEN_FORMS[name]
    vault.store(ws, "CRM", "CRM token", "api_token", {"token": TOKEN})
    automation = service.create_automation(ws, name="Echo", flow="test_echo", trigger="manual",
                                           max_attempts=1, config={})
    # Settings this flow reads, stored as they are: it declares no fields to check them.
    automation.config = json.dumps({
        "line": "y" * (registry.MAX_LOG_LINE - len(text) // 2) + text + " after" * 50,
        "error": "z" * (service.ERROR_LIMIT - len(text) // 2) + text + " after" * 50})
    automation.save()
    run = service.run_now(automation)
    stored = AutomationRun.get_by_id(run.id)
    assert stored.status == "failed" and "more characters" in stored.log
    assert len(stored.error) <= service.ERROR_LIMIT and stored.error.startswith("zzzz")
    for kept in (stored.log, stored.error):
        assert not leaks(kept, leak) and not leaks(kept, TOKEN), kept[-300:]
