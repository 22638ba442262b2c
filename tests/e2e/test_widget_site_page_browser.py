"""The site's page in the dashboard, as its owner uses it: the snippet (and the consent call)
copied with a button that says "Copied", the accent colour picked with a colour picker whose
contrast check answers as the colour changes (with a preview of the chat button), the chat
button's label, "load only after consent", and a multi-line away message; bad input is
refused beside its field and changes nothing. The page passes axe; its console stays quiet."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import log_in
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    console_fixture,
    make_widget_site,
)


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    yield made
    made.owner.http.close()


@pytest.fixture
def owner(new_context, console, site):
    """The owner on the site's page, in a browser that lets pages use the clipboard."""
    context = console.watch(new_context(permissions=["clipboard-read", "clipboard-write"]))
    page = context.new_page()
    log_in(page, site.owner_email)
    page.goto(site.page_path)
    return page


def clipboard(page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def test_the_snippet_and_the_consent_call_are_copied_with_a_button(owner, site):
    snippet = owner.get_by_label("Snippet", exact=True).input_value()
    assert f'data-site="{site.key}"' in snippet
    owner.get_by_role("button", name="Copy snippet").click()
    expect(owner.locator("#snippet-copied")).to_have_text("Copied")
    expect(owner.locator("#snippet-copied")).to_have_attribute("role", "status")
    assert clipboard(owner) == snippet
    expect(owner.locator("#snippet-copied")).to_have_text("", timeout=8000)  # then it clears

    owner.get_by_role("button", name="Copy consent call").click()
    expect(owner.locator("#consent-copied")).to_have_text("Copied")
    assert clipboard(owner) == (
        "if (window.Lumnar) { Lumnar.start(); } else { window.Lumnar = { consented: true }; }")
    assert_accessible(owner)


def test_the_accent_colour_is_picked_and_its_contrast_checked_as_it_changes(owner):
    colour = owner.get_by_label("Accent colour", exact=True)
    assert colour.get_attribute("type") == "color"
    line = owner.locator("#accent_color-contrast")
    expect(line).to_have_attribute("aria-live", "polite")
    expect(line).to_have_text("White text on this colour: contrast 7.9:1, easy to read "
                              "(4.5:1 needed).")  # the site's #4338ca
    preview = owner.locator(".launcher-preview")

    colour.fill("#ffee88")  # too light: said at once, before any save
    expect(line).to_have_text("White text on this colour: contrast 1.1:1, too hard to read: "
                              "4.5:1 is needed. Choose a darker colour.")
    expect(line).to_have_class(re.compile(r"\btoo-low\b"))
    assert preview.evaluate("p => getComputedStyle(p).backgroundColor") == "rgb(255, 238, 136)"

    colour.fill("#0f766e")
    expect(line).to_have_text("White text on this colour: contrast 5.4:1, easy to read "
                              "(4.5:1 needed).")
    assert preview.evaluate("p => getComputedStyle(p).backgroundColor") == "rgb(15, 118, 110)"

    owner.get_by_label("Chat button label", exact=True).fill("Questions?")
    expect(preview).to_have_text("Questions?")


def test_the_settings_are_saved_and_bad_input_changes_nothing(owner, site, console):
    owner.get_by_label("Accent colour", exact=True).fill("#7c2d12")
    owner.get_by_label("Chat button label", exact=True).fill("Ask a potter")
    away = owner.get_by_label("Away message", exact=True)
    assert away.evaluate("e => e.tagName") == "TEXTAREA"
    away.fill("We are at the kiln.\nWe answer every message by e-mail.")
    owner.get_by_label("Load only after consent (the widget waits for Lumnar.start())").check()
    owner.get_by_role("button", name="Save site").click()
    expect(owner.get_by_text("On for this site:")).to_be_visible()  # the page came back saved
    expect(owner.get_by_label("Away message", exact=True)).to_have_value(
        "We are at the kiln.\nWe answer every message by e-mail.")
    expect(owner.get_by_label("Chat button label", exact=True)).to_have_value("Ask a potter")
    expect(owner.get_by_label("Accent colour", exact=True)).to_have_value("#7c2d12")
    assert_accessible(owner)

    # A colour white text cannot be read on: refused beside the field (a 422, noted once by
    # Chromium's console), nothing saved. (A label longer than 40 characters cannot even be
    # typed: the field says maxlength 40; the server's refusal is tests/test_widget_site_page.py's.)
    console.expect("the server responded with a status of 422", times=1)
    label = owner.get_by_label("Chat button label", exact=True)
    assert label.get_attribute("maxlength") == "40"
    label.fill("Ask a potter, any day")
    owner.get_by_label("Accent colour", exact=True).fill("#ffee88")
    owner.get_by_role("button", name="Save site").click()
    expect(owner.locator("#accent_color-error")).to_have_text(
        "White text is hard to read on this colour; choose a darker one (contrast 1.1:1, 4.5:1 "
        "needed).")
    expect(owner.get_by_label("Accent colour", exact=True)).to_have_attribute(
        "aria-invalid", "true")
    assert_accessible(owner)
    owner.reload()
    expect(owner.get_by_label("Chat button label", exact=True)).to_have_value("Ask a potter")
    expect(owner.get_by_label("Accent colour", exact=True)).to_have_value("#7c2d12")

    # Put back as the other tests of this module found it.
    site.update()


def test_a_new_site_is_added_with_the_same_form(owner, console):
    owner.goto("/dashboard/sites")
    expect(owner.get_by_label("Chat button label", exact=True)).to_have_value("Chat with us")
    assert owner.get_by_label("Accent colour", exact=True).get_attribute("type") == "color"
    assert_accessible(owner)
