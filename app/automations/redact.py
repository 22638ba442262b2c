"""Scrub secrets out of text before it is stored or shown: known values and common token shapes."""

import json
import re
from collections.abc import Iterable
from urllib.parse import quote

MARK = "[redacted]"
LIMIT = 64 * 1024

# Shapes that are secrets wherever they appear, whoever's they are.
_SHAPES = [
    # The whole value of an Authorization header (Basic, Bearer, Token, anything else).
    (re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\r\n\"',}]+"), r"\1" + MARK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), r"\1 " + MARK),
    (re.compile(r"(?i)\b(token)\s+[A-Za-z0-9\-._~+/]{16,}=*"), r"\1 " + MARK),  # not "token expired"
    (re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"), MARK),  # Stripe
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MARK),  # GitHub
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), MARK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MARK),  # Slack
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MARK),  # AWS access key id
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MARK),  # JWT
    # A value under a name that says it is secret: token=…, "password": "…", api_key: …
    (re.compile(r"(?i)([\"']?\b[\w-]*(?:token|secret|passw(?:or)?d|api[_-]?key|apikey|private[_-]?key)"
                r"[\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;}]{4,})"), r"\1" + MARK),
    # Any long hex or base64 run given as a value (key=…, "key": "…"): keys and signatures look so.
    (re.compile(r"([\w-][\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9+/_-]{32,}={0,2})(?=[\"'\s&,;}]|$)"),
     r"\1" + MARK),
]


def _forms(value: str) -> set[str]:
    """The value as written, URL-encoded and JSON-escaped: a log line may hold any of them."""
    forms = {value, quote(value, safe=""), quote(value, safe="/:"), json.dumps(value)[1:-1]}
    return {f for f in forms if len(f) >= 4}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret value (4 characters or more) and every token shape replaced."""
    values = set()
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= 4:
            values |= _forms(secret)
    # Longest first, so a secret that contains another is replaced whole.
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MARK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def cap(text: str, limit: int = LIMIT) -> str:
    """At most `limit` bytes of UTF-8, cut on a character boundary, saying that it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    note = f"\n… log cut here: it passed {limit // 1024} KB.".encode()
    return data[: limit - len(note)].decode(errors="ignore") + note.decode()
