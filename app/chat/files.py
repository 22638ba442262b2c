"""Attachments: checks (the type comes from the bytes, never from the name or the browser) and
the one way their bytes are answered, for agents and visitors alike."""

import re
import unicodedata
from urllib.parse import quote

from flask import Response

MAX_BYTES = 10 * 1024 * 1024

ALLOWED = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
}

# The file pickers' `accept` attribute (the widget's and the dashboard's forms): made from
# ALLOWED so that a type added or dropped here is offered or withheld there too. It only
# narrows the picker; check() below still decides from the bytes.
ACCEPT = ",".join(ALLOWED)

# Text that a browser might treat as markup is refused even though it is "text".
_MARKUP = re.compile(rb"<\s*(!doctype|html|svg|script|body|head|iframe|\?xml)", re.I)


class FileRefused(ValueError):
    pass


def sniff(data: bytes) -> str | None:
    """The content type these bytes really are, among those we accept, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if b"\x00" in data or _MARKUP.search(data[:4096]):
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text/plain"


def safe_filename(name: str, content_type: str) -> str:
    """A plain file name for Content-Disposition, with the extension the bytes deserve."""
    name = unicodedata.normalize("NFKC", name or "").strip()
    stem = re.sub(r"[^\w.\- ]+", "_", name.rsplit(".", 1)[0])[:100].strip(" ._") or "file"
    return stem + ALLOWED[content_type]


def check(filename: str, data: bytes) -> tuple[str, str]:
    """(safe file name, content type) or FileRefused with a message a person understands."""
    if not data:
        raise FileRefused("The file is empty.")
    if len(data) > MAX_BYTES:
        raise FileRefused("Files can be at most 10 MB.")
    content_type = sniff(data)
    if content_type is None:
        raise FileRefused("Only images (PNG, JPEG, GIF, WebP), PDF and plain text files can be "
                          "sent. This file is of another kind.")
    return safe_filename(filename, content_type), content_type


def attachment_response(attachment, inline: bool) -> Response:
    disposition = "inline" if inline and attachment.is_image else "attachment"
    response = Response(bytes(attachment.data), mimetype=attachment.content_type)
    # Servers send headers as Latin-1: an ASCII name, plus the real one RFC 6266's way.
    name = attachment.filename
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or "file"
    disposition += f'; filename="{plain}"'
    if plain != name:
        disposition += f"; filename*=UTF-8''{quote(name)}"
    response.headers["Content-Disposition"] = disposition
    # Uploaded bytes: never sniffed or run, whatever serves them (the ASGI root adds the rest).
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
