"""Message text on screen: escaped first, then links and line breaks added."""

import re
from functools import lru_cache

from markupsafe import Markup, escape

URL = re.compile(r"\bhttps?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]", re.I)
MAX_CHARS = 5000


def render_text(text: str) -> Markup:
    # A message is shown to its agents and its visitor: made once. Only plain strings are
    # kept: a Markup equal to some visitor's text must never hand back its unescaped form.
    return _rendered(text) if type(text) is str else _render(text)


@lru_cache(maxsize=512)
def _rendered(text: str) -> Markup:
    return _render(text)


def _render(text: str) -> Markup:
    out, last = [], 0
    for m in URL.finditer(text):
        out.append(escape(text[last:m.start()]))
        url = escape(m.group(0))
        out.append(Markup(f'<a href="{url}" target="_blank" rel="noopener noreferrer nofollow ugc">'
                          f"{url}</a>"))
        last = m.end()
    out.append(escape(text[last:]))
    return Markup(str(Markup("").join(out)).replace("\n", "<br>"))


def preview(text: str, limit: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
