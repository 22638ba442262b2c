"""Satisfaction ratings in Chromium: the agent resolves a conversation on its page, the visitor's
open chat asks at once how it went (a form of labelled choices), the visitor rates it, and the
agent's page shows the rating without a reload. The chat passes axe with the question shown and
after it is answered; no console error or warning on the visitor's side."""

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import log_in, snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    chat_frame,
    console_fixture,
    make_widget_site,
    open_chat,
    say,
)


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    yield made
    made.owner.http.close()


def test_the_visitor_rates_a_resolved_conversation_and_the_agent_sees_it_live(
        new_context, console, site, host_site):
    visitor = console.watch(new_context()).new_page()
    visitor.goto(host_site.add(f"/csat-{site.key}.html", snippet_page(site.snippet)))
    chat = open_chat(visitor)
    first = "Is the blue teapot dishwasher safe?"
    say(chat, first)
    conversation_id = site.conversation_id(first)
    expect(chat.locator("form.w-rating-form")).to_have_count(0)

    agent = new_context().new_page()
    log_in(agent, site.owner_email)
    agent.goto(f"/dashboard/conversations/{conversation_id}")
    expect(agent.get_by_text("Live updates: connected")).to_be_visible()
    agent.locator(f"#conversation-{conversation_id}").get_by_role("button", name="Resolve").click()

    question = chat.get_by_role("group", name="How was this conversation?")
    expect(question).to_be_visible()
    assert_accessible(chat_frame(visitor))
    question.get_by_label("Good", exact=True).check()
    chat.get_by_label("Anything to add? (optional)").fill("Quick <b>and</b> kind.")
    chat.get_by_role("button", name="Send my rating").click()
    expect(chat.get_by_role("status").filter(has_text="Thank you for your rating.")).to_be_visible()
    expect(question).to_have_count(0)
    assert_accessible(chat_frame(visitor))

    expect(agent.locator(f"#rating-{conversation_id}")).to_have_text(
        "Rated: good — “Quick <b>and</b> kind.”")
    visitor.reload()
    chat = open_chat(visitor)
    expect(chat.locator("form.w-rating-form")).to_have_count(0)
