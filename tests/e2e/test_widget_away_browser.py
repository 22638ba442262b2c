"""Away mode in a visitor's browser: with nobody from the team online, the visitor's first
message is kept and shown (never refused), the chat then asks in the conversation where to
answer ("We'll answer by e-mail"), and the address left there is where the team's answer
arrives. No console error or warning on the way, and the chat passes axe in each state."""

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import snippet_page, unique_email, wait_until
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    chat_frame,
    console_fixture,
    make_widget_site,
    open_chat,
)


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    made.update(away_message="Back on Monday at 9.\nWrite anyway: we read everything.")
    yield made
    made.owner.http.close()


def test_the_first_words_are_kept_and_the_answer_goes_to_the_address_left_later(
        new_context, console, site, host_site, live_server):
    page = console.watch(new_context()).new_page()
    page.goto(host_site.add(f"/away-{site.key}.html", snippet_page(site.snippet)))
    chat = open_chat(page)
    # The away message, on its two lines; and no e-mail field before the first words.
    away = chat.locator("#away")
    expect(away).to_have_text("Back on Monday at 9.\nWrite anyway: we read everything.")
    assert away.evaluate("p => p.getBoundingClientRect().height") > 30  # two lines, not one
    expect(chat.get_by_label("Your e-mail (optional)")).to_have_count(0)

    first = "My parcel never came: order 5512."
    chat.get_by_label("Message", exact=True).fill(first)
    chat.get_by_role("button", name="Send", exact=True).click()
    expect(chat.locator("#messages > li.w-msg-visitor .w-body")).to_have_text(first)
    expect(chat.get_by_role("alert")).to_have_count(0)  # nothing refused
    expect(chat.get_by_text("We'll answer by e-mail.")).to_be_visible()
    address = chat.get_by_label("Your e-mail address", exact=True)
    expect(address).to_be_visible()
    # The chat scrolled to its newest line: the question is not under the message form.
    button = chat.get_by_role("button", name="Save my e-mail").bounding_box()
    assert button["y"] + button["height"] <= chat.locator("#compose").bounding_box()["y"]
    assert_accessible(chat_frame(page))

    # A mistyped address is refused beside the field (a 422, which Chromium's console notes
    # as a failed resource: expected here, once), then a good one is taken.
    console.expect("the server responded with a status of 422", times=1)
    address.fill("ann@")
    chat.get_by_role("button", name="Save my e-mail").click()
    expect(chat.locator("#ask-email-error")).to_have_text(
        "Enter a valid e-mail address, like name@example.com.")
    email = unique_email("ann")
    chat.get_by_label("Your e-mail address", exact=True).fill(email)
    chat.get_by_role("button", name="Save my e-mail").click()
    expect(chat.get_by_role("status").filter(has_text=f"Thanks! We'll answer at {email}.")) \
        .to_be_visible()
    assert_accessible(chat_frame(page))

    # The visitor leaves; the team answers, and the answer arrives by e-mail.
    conversation_id = site.conversation_id(first)
    page.close()
    # Gone once its stream's presence is: a reply while the widget is open is not e-mailed.
    wait_until(lambda: not live_server.rows(
        "SELECT 1 FROM presence WHERE kind = 'visitor' AND subject_id = ?", (conversation_id,)),
        10, "the visitor's stream to end")
    conversation = site.owner.get(f"/dashboard/conversations/{conversation_id}").text
    assert email in conversation
    site.reply(conversation_id, "Sorry! A new parcel leaves today.")
    mail = live_server.wait_for_mail(email, "answered your message", timeout=30)
    assert "A new parcel leaves today." in mail.get_body(preferencelist=("plain",)).get_content()
