"""The widget in the visitor's language, in a real browser: a French browser (locale fr-FR,
so Accept-Language fr-FR) gets the launcher, the chat, the greeting set for French on the
site's page and the answers of the chat's own message route in French, with the frame's
lang="fr"; a German one gets German. axe finds nothing serious in either, and the console
stays clean."""

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    CHAT_FRAME,
    chat_frame,
    console_fixture,
    make_widget_site,
)


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    answer = made.owner.post_form(made.page_path, f"{made.page_path}/languages",
                                  default_language="en", greeting_fr="Bonjour du salon de thé !")
    assert answer.status_code == 200 and "Languages saved." in answer.text, answer.text[:2000]
    yield made
    made.owner.http.close()


def open_in(new_context, console, site, host_site, locale, launcher):
    page = console.watch(new_context(locale=locale)).new_page()
    page.goto(host_site.add(f"/lang-{locale}-{site.key}.html", snippet_page(site.snippet)))
    page.get_by_role("button", name=launcher).click()
    return page, page.frame_locator(CHAT_FRAME)


def test_a_french_browser_gets_the_chat_in_french(new_context, console, site, host_site):
    page, chat = open_in(new_context, console, site, host_site, "fr-FR", "Discutons")
    expect(chat.locator("html")).to_have_attribute("lang", "fr")
    expect(chat.get_by_role("button", name="Envoyer", exact=True)).to_be_visible()
    expect(chat.get_by_label("Joindre un fichier")).to_be_attached()
    expect(chat.locator(".w-greeting")).to_have_text("Bonjour du salon de thé !")
    expect(chat.get_by_role("button", name="Fermer le chat")).to_be_visible()
    assert_accessible(chat_frame(page))

    # Nobody from the team is online: the message is kept and the chat asks for an e-mail,
    # in French, and the fresh form the message route answers with is French too.
    chat.get_by_label("Message", exact=True).fill("Avez-vous du thé vert ?")
    chat.get_by_role("button", name="Envoyer", exact=True).click()
    expect(chat.locator("#messages > li.w-msg-visitor .w-who")).to_have_text("Vous")
    expect(chat.get_by_text("Nous vous répondrons par e-mail.")).to_be_visible()
    expect(chat.get_by_label("Votre adresse e-mail", exact=True)).to_be_visible()
    chat.get_by_label("Message", exact=True).fill("Et du thé noir ?")
    chat.get_by_role("button", name="Envoyer", exact=True).click()
    # The second message arrives through the stream (rendered once, in English): the frame
    # puts its own word in.
    expect(chat.locator("#messages > li.w-msg-visitor .w-who")).to_have_text(["Vous", "Vous"])
    expect(chat.get_by_role("button", name="Envoyer", exact=True)).to_be_visible()
    assert_accessible(chat_frame(page))


def test_a_german_browser_gets_the_chat_in_german(new_context, console, site, host_site):
    page, chat = open_in(new_context, console, site, host_site, "de-DE", "Chatten Sie mit uns")
    expect(chat.locator("html")).to_have_attribute("lang", "de")
    expect(chat.get_by_role("button", name="Senden", exact=True)).to_be_visible()
    expect(chat.get_by_label("Nachricht", exact=True)).to_be_visible()
    # No German greeting was set: the site's own one.
    expect(chat.locator(".w-greeting")).to_have_text("Hello from the test shop")
    assert_accessible(chat_frame(page))
