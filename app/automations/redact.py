"""Scrub secrets out of text before it is stored or shown: known values in every common
encoding, and common token shapes. Text is always redacted whole first and cut afterwards
(`clip`), so that a cut can never leave part of a secret behind."""

import base64
import html
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MARK = "[redacted]"
LIMIT = 64 * 1024
MIN_SECRET = 4  # shorter values cannot be told from ordinary text
MIN_RUN = 8  # a piece of a secret this long left at a cut is redacted too
SHAPES_MARGIN = 1024
_SEP = "\0"  # joins the forms for the substring search at a cut; never inside a fragment

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

_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_URLSAFE = str.maketrans("+/", "-_")


def _base64_forms(raw: bytes) -> set[str]:
    """The secret base64-encoded alone (padded or not), and the characters that are the same
    whatever surrounds it when it sits inside a longer encoded string: base64 works on groups
    of 3 bytes, so there are exactly three alignments (the secret starting at byte 0, 1 or 2
    of a group). In each, the characters whose 6 bits all come from the secret are fixed by
    the secret alone; the one or two at each end that share bits with a neighbour are not,
    and are left (they carry fewer than 6 bits of it)."""
    alone = base64.b64encode(raw).decode()
    found = {alone, alone.rstrip("=")}
    bits = 8 * len(raw)
    for offset in (0, 1, 2):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        first = -(-8 * offset // 6)  # the first character lying wholly inside the secret
        last = (8 * offset + bits) // 6  # one past the last one
        found.add(encoded[first:last])
    return found | {form.translate(_URLSAFE) for form in found}


def _forms(value: str) -> set[str]:
    """Every way a log line may hold `value`: as written; percent-encoded (by the rules of
    the usual encoders: everything reserved, Python's default, URL paths, JavaScript's
    encodeURIComponent, form encoding with "+" for space; upper- or lower-case escapes);
    JSON-escaped (ASCII-only or not, with "/" escaped, with <>& escaped as HTML-safe
    encoders do); HTML-escaped; hex of its UTF-8 bytes in either case; base64 and base64url
    at every alignment. Compositions (base64 of a JSON string, an encoding of an encoding)
    are not listed: each layer would multiply the forms, and such texts are rare in answers."""
    raw = value.encode()
    forms = {value, html.escape(value), html.escape(value, quote=False), raw.hex(), raw.hex().upper()}
    for encoded in (quote(value, safe=""), quote(value), quote(value, safe="/:"),
                    quote(value, safe="!'()*"), quote_plus(value, safe="")):
        forms |= {encoded, _ESCAPE.sub(lambda m: m.group().lower(), encoded)}
    for escaped in (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):
        forms |= {escaped, escaped.replace("/", "\\/"),
                  escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")}
    forms |= _base64_forms(raw)
    return {form for form in forms if len(form) >= MIN_SECRET}


class Redactor:
    """The secrets of one run, their forms worked out once (a workspace may have dozens of
    secrets and a run logs many lines), and the one way text is redacted and cut."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._values: dict[str, set[str]] = {}  # each secret and its forms
        self._forms: list[str] | None = None
        self._joined = ""
        self._longest = 0
        for secret in secrets:
            self.add(secret)

    def add(self, value: str) -> None:
        """Treat `value` as a secret too (a value derived from one, like a Basic header)."""
        if isinstance(value, str) and len(value) >= MIN_SECRET and value not in self._values:
            self._values[value] = _forms(value)
            self._forms = None

    def _prepare(self) -> list[str]:
        if self._forms is None:
            forms = set().union(*self._values.values())
            self._forms = sorted(forms, key=len, reverse=True)
            long = [form for form in self._forms if len(form) >= MIN_RUN]
            self._joined = _SEP + _SEP.join(long) + _SEP
            self._longest = len(long[0]) if long else 0
        return self._forms

    def redact(self, text: str) -> str:
        """`text` with every form of every secret and every token shape replaced by MARK."""
        return _shapes(self._values_out(str(text)))

    def _values_out(self, text: str) -> str:
        """`text` with every form of every secret replaced. Overlapping finds are merged into
        one, so that two secrets sharing characters cannot leave the tail of one behind."""
        spans = []
        for form in self._prepare():
            at = text.find(form)
            while at != -1:
                spans.append((at, at + len(form)))
                at = text.find(form, at + 1)
        if not spans:
            return text
        spans.sort()
        parts, kept = [], 0
        start, end = spans[0]
        for s, e in spans[1:] + [(len(text) + 1, 0)]:
            if s <= end:
                end = max(end, e)
                continue
            parts += [text[kept:start], MARK]
            kept, (start, end) = end, (s, e)
        parts.append(text[kept:])
        return "".join(parts)

    def _run(self, text: str, at_end: bool) -> int:
        """The length of the longest end (or start) of `text`, MIN_RUN characters or more,
        that is a piece of some form of a secret; else 0. A shorter end of such a piece is a
        piece too, so the length can be found by halving."""
        if not self._longest or len(text) < MIN_RUN:
            return 0
        low, high = MIN_RUN - 1, min(len(text), self._longest)
        while low < high:
            mid = (low + high + 1) // 2
            piece = text[-mid:] if at_end else text[:mid]
            if _SEP not in piece and piece in self._joined:
                low = mid
            else:
                high = mid - 1
        return low if low >= MIN_RUN else 0

    def clip(self, text: str, limit: int, *, in_bytes: bool = False, note: str = " …") -> str:
        """`text` redacted, then cut to at most `limit` characters (or bytes of UTF-8), note
        included; `note` may say how much was left out with "{rest}" (characters).

        Redacting comes first, so a cut cannot split a secret, and the cut falls before a
        MARK, never inside one. Text may reach here already cut (an answer cut at 1 MB, a
        flow's own slicing): so a run of MIN_RUN or more characters of a secret's form at
        either end of what is kept is redacted too."""

        def size(s: str) -> int:
            return len(s.encode()) if in_bytes else len(s)

        text = self._values_out(str(text))
        whole = len(text)
        if size(text) <= limit + SHAPES_MARGIN:
            text = _shapes(text)
            if size(text) <= limit:
                return text
            whole = len(text)
        else:
            # The token shapes are costly regular expressions: run them on what can be kept
            # and a margin past it, not on a whole 1 MB answer. A token that starts before the
            # cut still matches when the margin ends inside it (every shape is open-ended).
            text = _shapes(text[:limit + SHAPES_MARGIN])
        # Room for the note, and for a MARK in place of a piece at each end (at most two
        # characters longer than the piece it replaces).
        room = limit - size(note.format(rest=whole)) - 2 * (len(MARK) - MIN_RUN)
        if room <= 0:
            return note.format(rest=whole)[:limit]
        cut = len(text.encode()[:room].decode(errors="ignore")) if in_bytes else room
        inside = text.rfind(MARK, max(0, cut - len(MARK) + 1), cut + len(MARK) - 1)
        if inside != -1 and inside < cut:
            cut = inside
        head = text[:cut]
        if end := self._run(head, at_end=True):
            head = head[:-end] + MARK
        if start := self._run(head, at_end=False):
            head = MARK + head[start:]
        return head + note.format(rest=max(whole - cut, 1))


def _shapes(text: str) -> str:
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def clip(text: str, secrets: Iterable[str] | Redactor = (), limit: int = LIMIT, **options) -> str:
    """`text` redacted then cut: see Redactor.clip. `secrets` may be a Redactor already made."""
    redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)
    return redactor.clip(text, limit, **options)


def redact(text: str, secrets: Iterable[str] | Redactor = ()) -> str:
    """`text` with every secret value (4 characters or more), in every common encoding, and
    every token shape replaced."""
    redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)
    return redactor.redact(text)


def cap(text: str, limit: int = LIMIT, secrets: Iterable[str] | Redactor = ()) -> str:
    """At most `limit` bytes of UTF-8, redacted first, saying that it was cut."""
    return clip(text, secrets, limit, in_bytes=True,
                note=f"\n… log cut here: it passed {limit // 1024} KB.")
