"""The widget's colours: WCAG contrast, and what the launcher on a customer's page is painted
with (the loader carries no colour of its own: it gets these from the status answer)."""

import math
import re

HEX = re.compile(r"#[0-9a-fA-F]{6}")
NEEDED = 4.5  # WCAG AA for normal text
WHITE = "#ffffff"
INK = "#1b1f24"  # the widget's text colour (frame.css --ink)


def luminance(hex_colour: str) -> float:
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours (1 to 21)."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def contrast_with_white(hex_colour: str) -> float:
    """WCAG contrast ratio of white text on this colour."""
    return contrast(WHITE, hex_colour)


def shown(ratio: float) -> str:
    """A contrast ratio as the site form shows it, rounded down to a tenth (4.46 is not shown
    as a passing 4.5), the same in the form's live check (static/widget/site.js)."""
    return f"{math.floor(ratio * 10) / 10:.1f}"


def readable_on_white(hex_colour: str) -> bool:
    return bool(HEX.fullmatch(hex_colour or "")) and contrast_with_white(hex_colour) >= NEEDED


def launcher_theme(accent: str) -> dict:
    """The launcher's colours for the loader: the site's accent behind white text (checked on
    save; a colour saved before that check gets the widget's dark ink instead, whichever reads
    better), a focus ring of the text colour inside a dark one, visible on any accent and any
    page, and the shadow."""
    accent = accent.lower() if HEX.fullmatch(accent or "") else "#4338ca"
    text = WHITE if contrast_with_white(accent) >= contrast(INK, accent) else INK
    return {"accent": accent, "text": text, "ring": INK if text == WHITE else WHITE,
            "shadow": "rgba(0, 0, 0, 0.25)"}
