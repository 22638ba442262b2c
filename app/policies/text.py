"""A policy's Markdown made into safe HTML, and the word-level difference between two texts.

Policy texts are written by staff, but they are shown to everyone on public pages and must
never carry script: raw HTML is off (it shows as text), images are off, and a link whose
address is not http(s), mailto or on this site is not made into a link at all."""

import difflib
import re

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

SAFE_SCHEMES = {"http", "https", "mailto"}
# Characters browsers drop from an address before reading its scheme ("java\tscript:").
_IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20\x7f]+")


def safe_link(url: str) -> bool:
    """An address a policy may link to: http(s), mailto, or a path on this site. Anything
    else (javascript:, data:, vbscript:, file:, an unknown scheme) is refused."""
    cleaned = _IGNORED_IN_SCHEME.sub("", url or "")
    if cleaned.startswith("//"):
        cleaned = "https:" + cleaned
    head = re.split(r"[/?#]", cleaned, maxsplit=1)[0]
    if ":" not in head:
        return True  # a path, a query or a fragment on this site
    return head.split(":", 1)[0].lower() in SAFE_SCHEMES


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    # markdown-it's own check (no javascript:, vbscript:, file:, most data:) is replaced by
    # an allow-list: a link that fails it stays plain text.
    md.validateLink = safe_link
    return md


_MD = _parser()


def to_html(text: str) -> Markup:
    return Markup(_MD.render(text or ""))


# --- differences ---------------------------------------------------------------------------

_TOKENS = re.compile(r"\s+|[^\s]+")


def words(text: str) -> list[str]:
    """The text as words and the whitespace between them, so that joining gives it back."""
    return _TOKENS.findall(text or "")


def word_diff(old: str, new: str) -> Markup:
    """`new` against `old`, word by word: removed words in <del>, added ones in <ins>,
    everything escaped (shown as the Markdown source, where a change in a link is visible)."""
    a, b = words(old), words(new)
    out = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(escape("".join(a[i1:i2])))
            continue
        if op in ("delete", "replace"):
            out.append(Markup("<del>{}</del>").format("".join(a[i1:i2])))
        if op in ("insert", "replace"):
            out.append(Markup("<ins>{}</ins>").format("".join(b[j1:j2])))
    return Markup("").join(out)


def diff_counts(old: str, new: str) -> tuple[int, int]:
    """(words added, words removed), whitespace not counted."""
    a, b = words(old), words(new)
    added = removed = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            removed += sum(1 for w in a[i1:i2] if not w.isspace())
        if op in ("insert", "replace"):
            added += sum(1 for w in b[j1:j2] if not w.isspace())
    return added, removed
