"""Private notes in real browsers: an agent switches the reply form to its note mode and adds a
note naming a teammate; the teammate's conversation page (another browser) shows it live with
its "Private note" label and the mention; the visitor's widget (the iframe on the customer's
site) shows the reply written after it, never the note. Each page passes axe."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import confirmed_user_over_http, log_in, snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    chat_frame,
    console_fixture,
    make_widget_site,
    open_chat,
    say,
    shown,
)
from tests.mailcatcher import link_in

NOTE = "@Mia he is a VIP: refund without the receipt"
REPLY = "Your refund is on its way."


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    yield made
    made.owner.http.close()


def teammate(live_server, site) -> str:
    """Mia Mate, with an account of her own, invited to the owner's workspace as an agent:
    her e-mail, and the invitation link she gets."""
    email = confirmed_user_over_http(live_server, "mate", name="Mia Mate")
    site.owner.post_form("/dashboard/team", "/dashboard/team/invitations", email=email,
                         role="agent")
    assert site.owner.last.status_code == 200, site.owner.last.text[:2000]
    return email, link_in(live_server.wait_for_mail(email, "invited you to"))


def test_a_note_reaches_the_team_live_and_never_the_visitor(new_context, console, site,
                                                          host_site, live_server):
    mate_email, invitation = teammate(live_server, site)

    # The owner and Mia each have the dashboard open in a browser of their own.
    owner = new_context().new_page()
    log_in(owner, site.owner_email)
    mate = new_context().new_page()
    log_in(mate, mate_email)
    mate.goto(invitation)
    mate.get_by_role("button", name="Accept invitation").click()
    mate.wait_for_url("**/dashboard/**")

    # A visitor writes on the customer's site.
    visitor = console.watch(new_context()).new_page()
    visitor.goto(host_site.add(f"/notes-{site.key}.html", snippet_page(site.snippet)))
    chat = open_chat(visitor)
    say(chat, "My teapot arrived broken.")
    conversation_id = site.conversation_id("My teapot arrived broken.")
    url = f"/dashboard/conversations/{conversation_id}"
    for page in (owner, mate):
        page.goto(url)
        expect(page.get_by_text("Live updates: connected")).to_be_visible()

    # The owner switches to a note (focus goes to its box) and adds one naming Mia.
    owner.get_by_role("link", name="Write a private note").click()
    box = owner.get_by_label("Private note", exact=True)
    expect(box).to_be_focused()
    expect(box).to_have_attribute("aria-describedby", "note-body-hint")
    box.fill(NOTE)
    owner.get_by_role("button", name="Add note").click()
    mine = owner.locator("li.msg-note").filter(has_text=NOTE)
    expect(mine).to_have_count(1)
    expect(owner.get_by_label("Private note", exact=True)).to_have_value("")  # still a note form

    # Mia's page shows it live, labelled as a note, naming her for the browser's alert.
    (mia_id,) = live_server.rows('SELECT id FROM "user" WHERE email = ?', (mate_email,))[0]
    theirs = mate.locator("li.msg-note").filter(has_text=NOTE)
    expect(theirs).to_have_count(1)
    expect(theirs.locator(".note-label")).to_have_text("Private note")
    expect(theirs).to_have_attribute("data-mentions", str(mia_id))
    # She had the dashboard open: the mention is stored, and no e-mail went to her.
    # (The live server is shared with the other browser modules: only this note's mentions.)
    assert live_server.rows("SELECT n.user_id FROM note_mention n JOIN message m ON m.id = "
                            "n.message_id WHERE m.body = ?", (NOTE,)) == [(mia_id,)]
    # (E-mails are stored before the note's answer: none stored is none sent.)
    assert live_server.rows('SELECT 1 FROM outbound_email WHERE "to" = ? AND subject LIKE ?',
                            (mate_email, "%mentioned you%")) == []
    assert_accessible(mate)

    # Back to a reply, which the visitor gets; the note never reaches the widget.
    owner.get_by_role("link", name="Write a reply instead").click()
    reply = owner.get_by_label("Reply", exact=True)
    expect(reply).to_be_focused()
    reply.fill(REPLY)
    owner.get_by_role("button", name="Send reply").click()
    expect(chat.locator("#messages > li").filter(has_text=REPLY)).to_have_count(1)
    assert REPLY in shown(chat)
    frame_html = chat_frame(visitor).content()
    assert "VIP" not in frame_html and "Private note" not in frame_html
    assert not re.search(r"msg-note", frame_html)
    assert_accessible(owner)
    assert_accessible(chat_frame(visitor))

    # A reload of the widget reads the history from the server: still no note.
    visitor.reload()
    chat = open_chat(visitor)
    expect(chat.locator("#messages > li").filter(has_text=REPLY)).to_have_count(1)
    assert "VIP" not in chat_frame(visitor).content()
