"""The chat button on a customer's page, as a visitor sees and uses it: the site's own colour and
label (the loader carries no colour of its own), text that reads well on it, a focus ring that
shows on any colour, the keyboard (opening puts the visitor in the message field, Escape
closes and gives focus back to the button), and the team's new messages read out through a
polite live region. Every test runs under the console guard: no error, no warning."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    CHAT_FRAME,
    chat_frame,
    console_fixture,
    make_widget_site,
    say,
)

ROOT = Path(__file__).resolve().parents[2]
LABEL = "Ask the tea team"
ACCENT = "#0f766e"


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    made.update(accent_color=ACCENT, launcher_label=LABEL)
    yield made
    made.owner.http.close()


@pytest.fixture
def page(new_context, console, site, host_site):
    """A visitor on the customer's page, the chat button shown."""
    visitor = console.watch(new_context()).new_page()
    visitor.goto(host_site.add(f"/launcher-{site.key}.html", snippet_page(site.snippet)))
    expect(launcher(visitor)).to_be_visible()
    return visitor


def launcher(page):
    return page.locator("[data-lumnar-launcher]")


def rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(n) for n in re.findall(r"\d+", css)[:3])


def luminance(colour) -> float:
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def looks(page) -> dict:
    return launcher(page).evaluate("""b => {
      const s = getComputedStyle(b);
      return {background: s.backgroundColor, color: s.color, shadow: s.boxShadow,
              text: b.firstChild.textContent};
    }""")


def test_the_loader_carries_no_colour_of_its_own():
    loader = (ROOT / "static" / "widget" / "loader.js").read_text()
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", loader, flags=re.S)  # comments may say anything
    assert not re.search(r"#[0-9a-fA-F]{3,8}\b|\brgba?\(|\bhsla?\(", code)
    assert not re.search(r"\b(white|black|indigo|red|blue|green|gr[ae]y)\b", code, flags=re.I)


def test_the_button_wears_the_sites_colour_and_label_and_reads_well(page, site, host_site):
    shown = looks(page)
    assert shown["text"] == LABEL
    assert rgb(shown["background"]) == (0x0F, 0x76, 0x6E)
    assert contrast(rgb(shown["color"]), rgb(shown["background"])) >= 4.5
    expect(page.get_by_role("button", name=LABEL)).to_have_attribute("aria-expanded", "false")
    assert_accessible(page)  # the button on the customer's page, colour contrast included

    # Changed on the site's page, changed on the customer's next page view: the colour and the
    # words come from Lumnar, not from the loader.
    site.update(accent_color="#7c2d12", launcher_label="Talk to us")
    try:
        page.reload()
        expect(page.get_by_role("button", name="Talk to us")).to_be_visible()
        shown = looks(page)
        assert rgb(shown["background"]) == (0x7C, 0x2D, 0x12)
        assert contrast(rgb(shown["color"]), rgb(shown["background"])) >= 4.5
    finally:
        site.update(accent_color=ACCENT, launcher_label=LABEL)


def test_the_keyboard_opens_the_chat_into_its_message_field_and_escape_closes_it(page):
    button = launcher(page)
    page.keyboard.press("Tab")  # the page has nothing else to focus
    expect(button).to_be_focused()
    # The ring: the text colour next to the button, a dark ring round that; a screenshot of
    # it goes with the test's report (tmp).
    shadow = looks(page)["shadow"]
    assert "rgb(255, 255, 255) 0px 0px 0px 3px" in shadow, shadow
    assert "rgb(27, 31, 36) 0px 0px 0px 6px" in shadow, shadow

    page.keyboard.press("Enter")
    chat = page.frame_locator(CHAT_FRAME)
    field = chat.get_by_label("Message", exact=True)
    expect(field).to_be_focused()
    page.keyboard.type("Typed without a click")
    expect(field).to_have_value("Typed without a click")
    expect(button).to_have_attribute("aria-expanded", "true")

    page.keyboard.press("Escape")
    expect(page.locator(CHAT_FRAME)).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_be_focused()
    assert "0px 0px 0px 6px" in looks(page)["shadow"]  # the ring is back with the focus

    page.keyboard.press("Enter")  # open again: straight back into the field
    expect(field).to_be_focused()
    expect(field).to_have_value("Typed without a click")
    chat.get_by_role("button", name="Close the chat").click()
    expect(page.locator(CHAT_FRAME)).to_be_hidden()
    expect(button).to_be_focused()


def test_a_mouse_click_opens_the_chat_without_a_focus_ring(page):
    launcher(page).click()
    expect(page.frame_locator(CHAT_FRAME).get_by_label("Message", exact=True)).to_be_focused()
    assert "0px 0px 0px 6px" not in looks(page)["shadow"]


def test_the_teams_new_messages_are_read_out_politely(page, site):
    launcher(page).click()
    chat = page.frame_locator(CHAT_FRAME)
    say(chat, "Do you have oolong?")
    announce = chat.locator("#announce")
    expect(announce).to_have_attribute("aria-live", "polite")
    expect(announce).to_have_attribute("role", "status")
    expect(announce).to_have_text("")  # the visitor's own words are not read back

    conversation_id = site.conversation_id("Do you have oolong?")
    site.reply(conversation_id, "Yes, three kinds.")
    expect(announce).to_have_text("Olive: Yes, three kinds.")
    site.reply(conversation_id, "Shall I send a sample?")
    expect(announce).to_have_text("Olive: Shall I send a sample?")
    assert_accessible(chat_frame(page))

    # History is not read out again when the chat is loaded anew.
    page.reload()
    launcher(page).click()
    expect(chat.locator("#messages > li")).to_have_count(3)
    expect(chat.locator("#announce")).to_have_text("")
