"""Away mode keeps a visitor's first words: with nobody from the team online, a message without
an e-mail address is stored (the team is e-mailed as before), then the chat asks, in the
conversation, where to answer ("We'll answer by e-mail"). An address left there attaches to the
visitor: the conversation's page shows it, and the team's replies are e-mailed to it."""

import re

from app.chat import service
from app.chat.models import Conversation, Message, Presence
from app.db import connection
from app.widget.models import Visitor
from tests.chat_fixtures import (  # noqa: F401  (fixtures)
    WidgetVisitor,
    chat_state,
    count,
    get,
    online_fixture,
    reply,
    set_agent_online,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import db_state
from tests.mailcatcher import text_of

OWNER = "owner@example.com"
ASKED = "We'll answer by e-mail."


def ask_email(visitor, email):
    return visitor.http.post(visitor.url("email"), data={"email": email}, headers=visitor.headers)


def test_the_first_message_is_kept_and_the_chat_asks_where_to_answer(site, visitor, smtp):
    response = visitor.send("Do you repair teapots?")
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#chat"  # the whole chat, as for any first message
    html = text(response)
    assert "Do you repair teapots?" in html
    assert ASKED in html
    assert re.search(r'<label for="ask-email-input">Your e-mail address</label>', html)
    # The message form asks for nothing more while the team is away.
    assert 'id="w-email"' not in html
    assert get(Message).body == "Do you repair teapots?"
    conversation = visitor.conversation()
    assert conversation.unread_count == 1
    # The team hears of it by e-mail, as before.
    notice = text_of(smtp.wait_for(OWNER, "New chat message on Shop"))
    assert "Do you repair teapots?" in notice
    assert f"/dashboard/conversations/{conversation.id}" in notice
    # A reload of the chat asks again, until an address is left.
    assert ASKED in text(visitor.chat())


def test_an_email_left_later_attaches_to_the_visitor_and_replies_go_there(
        app, auth, site, visitor, smtp):
    visitor.send("Is the shop open on Sunday?")
    conversation = visitor.conversation()

    response = ask_email(visitor, "  Ann@Example.com ")
    assert response.status_code == 200
    assert "Thanks! We'll answer at ann@example.com." in text(response)
    assert visitor.record().email == "ann@example.com"
    assert "ann@example.com" in text(auth.get(f"/dashboard/conversations/{conversation.id}"))
    assert ASKED not in text(visitor.chat())

    # The team answers while the visitor is gone: the answer goes to that address.
    answer = reply(auth, conversation.id, {"body": "Yes, from 10 to 4."})
    assert answer.status_code in (200, 303), answer.text
    mail = smtp.wait_for("ann@example.com", "Shop answered your message")
    assert "Yes, from 10 to 4." in text_of(mail)


def test_later_messages_are_kept_too_and_the_question_comes_with_the_fresh_form(site, visitor):
    visitor.send("First words")
    second = visitor.send("Second words")
    assert second.status_code == 200
    html = text(second)
    assert "HX-Retarget" not in second.headers
    assert '<div id="ask-email" class="w-ask" hx-swap-oob="true">' in html
    assert ASKED in html
    assert count(Message) == 2


def test_with_the_team_online_the_form_offers_an_optional_email_and_asks_nothing(
        site, online, visitor):
    html = text(visitor.send("Hello"))
    assert "Your e-mail (optional)" in html
    assert ASKED not in html
    assert ASKED not in text(visitor.send("Still there?"))


def test_the_team_leaving_mid_conversation_brings_the_question(site, ws, visitor, monkeypatch):
    monkeypatch.setattr(service, "ONLINE_TRUST_SECONDS", 0)  # "online" is not remembered
    set_agent_online(ws)
    assert ASKED not in text(visitor.send("Hello"))
    with connection():
        Presence.delete().execute()  # the last agent closed the dashboard
    html = text(visitor.send("Hello again?"))
    assert ASKED in html and 'hx-swap-oob="true"' in html


def test_once_an_email_is_known_nothing_is_asked(site, visitor):
    visitor.send("Hi", email="bob@example.com")
    assert visitor.record().email == "bob@example.com"
    assert ASKED not in text(visitor.chat())
    assert ASKED not in text(visitor.send("And another thing"))


BAD = [
    ("", "Enter your e-mail address, so that we can answer you."),
    ("not-an-address", "Enter a valid e-mail address, like name@example.com."),
    ("a" * 250 + "@example.com", "Field cannot be longer than 254 characters."),
]


def test_a_bad_address_is_refused_beside_the_field_and_changes_nothing(site, visitor):
    visitor.send("Hello?")
    before = db_state(Visitor, Conversation, Message)
    for email, message in BAD:
        response = ask_email(visitor, email)
        assert response.status_code == 422, email
        html = text(response)
        assert message in html, (email, html)
        assert 'aria-invalid="true"' in html
        assert 'id="ask-email-error"' in html
        assert db_state(Visitor, Conversation, Message) == before


def test_leaving_an_email_needs_the_visitors_token(app, site, visitor):
    visitor.send("Hello?")
    before = chat_state()
    stranger = visitor.http.post(visitor.url("email"), data={"email": "eve@example.com"},
                                 headers={"HX-Request": "true"})
    assert stranger.status_code == 401
    assert chat_state() == before
