"""The site's page in the dashboard: the snippet with its Copy button and the consent call, where
the widget loads, and the settings this issue added (the chat button's label, "load only after
consent", a colour picker with its contrast line, a multi-line away message). Bad input is
refused beside its field with 422 and changes nothing; the page has no inline script or style."""

import re
from html import unescape

import pytest

from app.widget.models import Site
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    AGENT_EMAIL,
    agent_fixture,
    chat_state,
    get,
    site_fixture,
    text,
    ws_fixture,
)

SETTINGS = {
    "name": "Corner Shop", "allowed_origins": "https://shop.example.com",
    "greeting": "Hello!", "away_message": "We are out.", "accent_color": "#0f766e",
    "retention_days": "30", "enabled": "y",
}


def page(client, site) -> str:
    return text(client.get(f"/dashboard/sites/{site.id}"))


def save(client, site, **fields):
    return client.post_form(f"/dashboard/sites/{site.id}", {**SETTINGS, **fields}, htmx=True)


def test_the_page_offers_copy_buttons_the_consent_call_and_where_the_widget_loads(auth, site):
    html = page(auth, site)
    assert '<button type="button" class="button" data-copy="snippet" data-copied="snippet-copied">Copy snippet</button>' in html
    assert '<span id="snippet-copied" class="copied" role="status"></span>' in html
    assert ("if (window.Lumnar) { Lumnar.start(); } else { window.Lumnar = { consented: true }; }"
            in html)
    assert '<label for="consent-call">' in html
    assert "Off for this site" in html
    assert '<h2 id="origins-title">Where the widget loads</h2>' in html
    assert "Refused in the last 7 days" in html
    # The settings: a colour picker with its contrast line, the button's label, the consent
    # switch, and the away message on several lines.
    assert re.search(r'<input [^>]*id="accent_color"[^>]*type="color"[^>]*value="#4338ca"', html)
    assert "White text on this colour: contrast 7.9:1, easy to read (4.5:1 needed)." in html
    assert re.search(r'<input [^>]*id="launcher_label"[^>]*maxlength="40"[^>]*value="Chat with us"', html)
    assert re.search(r'<input [^>]*id="consent_required"[^>]*type="checkbox"', html)
    assert re.search(r'<textarea [^>]*id="away_message"[^>]*rows="3"', html)


def test_every_field_has_a_label_and_nothing_is_inline(auth, site):
    html = page(auth, site)
    for found in re.finditer(r'<(?:input|textarea|select)\b([^>]*)>', html):
        attrs = found.group(1)
        if 'type="hidden"' in attrs:
            continue
        field_id = re.search(r'id="([^"]+)"', attrs).group(1)
        assert f'<label for="{field_id}"' in html, field_id
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script from a file
    assert not re.search(r"<style\b| style=", html)
    assert '<script src="/static/widget/site.js" defer></script>' in html


def test_an_agent_sees_where_the_widget_loads_but_not_the_settings(agent, site):
    html = page(agent["client"], site)
    assert "Where the widget loads" in html and "Copy snippet" in html
    assert 'id="site-form"' not in html


def test_the_new_settings_are_saved(auth, site):
    answer = save(auth, site, launcher_label="  Questions? ", consent_required="y",
                  away_message="Back at 9.\r\n\r\nWrite anyway.\r\n")
    assert answer.status_code == 204, text(answer)
    saved = get(Site, Site.id == site.id)
    assert saved.launcher_label == "Questions?"
    assert saved.consent_required is True
    assert saved.away_message == "Back at 9.\n\nWrite anyway."
    assert "On for this site:" in page(auth, site)


def test_an_empty_label_is_the_default_one(auth, site):
    assert save(auth, site, launcher_label="   ").status_code == 204
    assert get(Site, Site.id == site.id).launcher_label == "Chat with us"
    # A form without the new fields (one from before them) keeps working: the defaults.
    assert save(auth, site).status_code == 204
    saved = get(Site, Site.id == site.id)
    assert (saved.launcher_label, saved.consent_required) == ("Chat with us", False)


BAD = [
    ("launcher_label", "x" * 41, "Keep the button's label to 40 characters or fewer."),
    ("away_message", "x" * 301, "Keep the away message to 300 characters or fewer."),
    ("away_message", " \r\n ", "Write an away message."),
    ("accent_color", "#ffee88", "White text is hard to read on this colour; choose a darker "
                                "one (contrast 1.1:1, 4.5:1 needed)."),
    ("accent_color", "teal", "Use a colour like #4338ca."),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{f}={v[:12]!r}" for f, v, _ in BAD])
def test_bad_settings_are_refused_beside_their_field_and_change_nothing(auth, site, field, value,
                                                                        message):
    before = chat_state()
    answer = save(auth, site, **{field: value})
    assert answer.status_code == 422
    html = unescape(text(answer))
    assert f'<p class="error" id="{field}-error">{message}</p>' in html
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="{field}"',
                     html)
    assert chat_state() == before


def test_the_contrast_line_says_when_a_refused_colour_is_too_light(auth, site):
    html = text(save(auth, site, accent_color="#ffee88"))
    assert ('<p id="accent_color-contrast" class="contrast too-low" aria-live="polite">White text '
            "on this colour: contrast 1.1:1, too hard to read: 4.5:1 is needed. Choose a darker "
            "colour.</p>") in html
