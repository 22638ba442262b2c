"""Signed-in visitors in real browsers: the owner makes the site's secret on its page (shown
once), the shop's page names its user with the id's HMAC, and that user's conversation is
there in another browser; a signed-out page, or one whose signature is forged, shows none of
it. A page that signs its user in without reloading (Lumnar.identify) gets them too. No
console error or warning on the way; the site's page passes axe with the secret shown."""

import hashlib
import hmac

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import log_in, snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    chat_frame,
    console_fixture,
    host_token,
    make_widget_site,
    open_chat,
    say,
    shown,
)


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    yield made
    made.owner.http.close()


@pytest.fixture(scope="module")
def secret(site, browser):
    """The owner makes the secret on the site's page, in a browser, and reads it there once."""
    context = browser.new_context(base_url=site.lumnar)
    page = context.new_page()
    log_in(page, site.owner_email)
    page.goto(site.page_path)
    page.get_by_role("button", name="Make a secret").click()
    field = page.get_by_label("Identity secret", exact=True)
    expect(field).to_be_visible()
    made = field.input_value()
    assert_accessible(page)
    page.reload()
    expect(page.get_by_label("Identity secret", exact=True)).to_have_count(0)
    assert made not in page.content()
    expect(page.get_by_role("button", name="Replace the secret")).to_be_visible()
    context.close()
    return made


def signed_snippet(site, secret: str, user_id: str, name: str) -> str:
    """The snippet as the shop's server writes it for a signed-in user (README's recipe)."""
    digest = hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return site.snippet.replace(
        " async>", f' data-user-id="{user_id}" data-user-name="{name}" data-user-hash="{digest}" async>')


def test_a_verified_visitors_conversation_is_there_in_another_browser_and_not_when_signed_out(
        new_context, console, site, secret, host_site):
    account = host_site.add(f"/account-{site.key}.html",
                            snippet_page(signed_snippet(site, secret, "4711", "Ann Example")))
    laptop = console.watch(new_context()).new_page()
    laptop.goto(account)
    say(open_chat(laptop), "Where is order 5512?")
    # The verified visitor's token is kept nowhere in the browser: not on the shop's page, not
    # in the chat frame's storage.
    assert host_token(laptop, site.key) is None
    assert chat_frame(laptop).evaluate(
        "k => { try { return localStorage.getItem(k); } catch (e) { return null; } }",
        f"lumnar-visitor:{site.key}") is None

    phone = console.watch(new_context()).new_page()
    phone.goto(account)
    chat = open_chat(phone)
    expect(chat.locator("#messages > li .w-body")).to_have_text(["Where is order 5512?"])
    say(chat, "Sent from my phone")

    # Signed out on the laptop: the shop's plain snippet shows an anonymous chat.
    shop = host_site.add(f"/shop-{site.key}.html", snippet_page(site.snippet))
    laptop.goto(shop)
    chat = open_chat(laptop)
    expect(chat.get_by_label("Message", exact=True)).to_be_visible()
    assert shown(chat) == []

    # The team sees one verified visitor with both messages.
    page = site.owner.get(f"/dashboard/conversations/{site.conversation_id('Sent from my phone')}").text
    assert "Where is order 5512?" in page and "Sent from my phone" in page
    assert "<strong class=\"ok\">Verified</strong>: signed in on your site as <code>4711</code>" in page


def test_a_forged_signature_gets_an_anonymous_chat_and_is_counted(
        new_context, console, site, secret, host_site):
    ann = host_site.add(f"/ann-{site.key}.html",
                        snippet_page(signed_snippet(site, secret, "5000", "Ann")))
    page = console.watch(new_context()).new_page()
    page.goto(ann)
    say(open_chat(page), "Ann's private question")

    forged = host_site.add(f"/forged-{site.key}.html", snippet_page(
        signed_snippet(site, "a guessed secret", "5000", "Mallory")))
    intruder = console.watch(new_context()).new_page()
    intruder.goto(forged)
    chat = open_chat(intruder)
    expect(chat.get_by_label("Message", exact=True)).to_be_visible()
    assert shown(chat) == []
    assert "refused" in site.owner.get(site.page_path).text


def test_a_page_that_signs_its_user_in_without_reloading_shows_their_conversation(
        new_context, console, site, secret, host_site):
    user_id = "6100"
    digest = hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    first = console.watch(new_context()).new_page()
    first.goto(host_site.add(f"/spa-a-{site.key}.html",
                             snippet_page(signed_snippet(site, secret, user_id, "Bo"))))
    say(open_chat(first), "Asked before the page app signed in")

    app_page = console.watch(new_context()).new_page()
    app_page.goto(host_site.add(f"/spa-b-{site.key}.html", snippet_page(site.snippet)))
    chat = open_chat(app_page)
    expect(chat.get_by_label("Message", exact=True)).to_be_visible()
    assert shown(chat) == []
    app_page.evaluate("([id, hash]) => Lumnar.identify({id: Number(id), name: 'Bo', hash: hash})",
                      [user_id, digest])
    expect(chat.locator("#messages > li .w-body")).to_have_text(
        ["Asked before the page app signed in"])
    app_page.evaluate("() => Lumnar.identify(null)")  # signed out: anonymous again
    expect(chat.locator("#messages > li")).to_have_count(0)
