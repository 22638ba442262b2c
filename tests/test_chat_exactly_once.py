"""Exactly once, even when the client retries: each chat form carries an id made fresh each
time it is rendered; a post sent again with the same id (a retry after a lost answer) is
answered as the first one was and stores nothing new, no message, no event."""

import re

from app.chat.models import ChatEvent, Conversation, Message
from app.chat.service import client_id_from
from tests.chat_fixtures import (  # noqa: F401  (fixtures by name)
    asgi_request,
    conversation_fixture,
    count,
    online_fixture,
    reply,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)

CLIENT_ID = re.compile(r'name="client_id" value="([^"]*)"')


def client_ids(html: str) -> list[str]:
    return CLIENT_ID.findall(html)


def without_client_id(html: str) -> str:
    """The answer with its form's fresh id taken out: otherwise the same form."""
    return CLIENT_ID.sub('name="client_id" value=""', html)


def visitor_post(visitor, fields):
    return asgi_request(visitor.app, "POST", visitor.url("messages"), data=fields,
                        headers=visitor.headers)


def test_each_render_of_a_chat_form_carries_a_fresh_valid_client_id(auth, visitor, conversation):
    widget = [client_ids(text(visitor.chat())) for _ in range(2)]
    page = [client_ids(auth.get(f"/dashboard/conversations/{conversation.id}").get_data(
        as_text=True)) for _ in range(2)]
    for first, second in (widget, page):
        assert len(first) == len(second) == 1
        assert first != second
        assert all(client_id_from(value) == value for value in first + second)


def test_a_visitor_message_retried_with_its_client_id_is_stored_once(visitor, conversation):
    messages, events = count(Message), count(ChatEvent, ChatEvent.kind == ChatEvent.MESSAGE)
    fields = {"body": "Is the blue teapot back in stock?", "client_id": "v-retry-1"}
    first, retry = visitor_post(visitor, fields), visitor_post(visitor, fields)
    assert first.status_code == retry.status_code == 200
    assert 'id="compose"' in first.text
    assert without_client_id(retry.text) == without_client_id(first.text)
    assert count(Message) == messages + 1
    assert count(ChatEvent, ChatEvent.kind == ChatEvent.MESSAGE) == events + 1


def test_a_retried_first_message_starts_one_conversation_and_is_answered_as_the_first(
        visitor, online):
    fields = {"body": "Hello, anyone there?", "client_id": "first-message"}
    first, retry = visitor_post(visitor, fields), visitor_post(visitor, fields)
    assert first.status_code == retry.status_code == 200
    # Both swap the whole chat in: the page that lost the first answer still has no chat.
    assert first.headers["HX-Retarget"] == retry.headers["HX-Retarget"] == "#chat"
    assert count(Conversation) == 1 and count(Message) == 1
    assert count(ChatEvent, ChatEvent.kind == ChatEvent.MESSAGE) == 1


def test_visitor_messages_with_different_client_ids_are_two_messages(visitor, conversation):
    messages = count(Message)
    for client_id in ("one", "two"):
        assert visitor_post(visitor, {"body": "same words", "client_id": client_id}
                            ).status_code == 200
    assert count(Message) == messages + 2


def test_a_client_id_that_is_not_a_short_url_safe_token_counts_as_none(visitor, conversation):
    messages = count(Message)
    for _ in range(2):
        answer = visitor_post(visitor, {"body": "hi", "client_id": "not one/" + "x" * 70})
        assert answer.status_code == 200
        assert all(client_id_from(value) == value for value in client_ids(answer.text))
    assert count(Message) == messages + 2


def test_an_htmx_agent_reply_retried_with_its_client_id_is_stored_once(auth, conversation):
    messages, events = count(Message), count(ChatEvent, ChatEvent.kind == ChatEvent.MESSAGE)
    # One CSRF token for both posts, as one page sends: each fresh form carries the token its
    # request came with, and two tokens signed a second apart would differ in their stamp.
    fields = {"body": "Yes, it is back.", "client_id": "agent-retry-1", "csrf_token": auth.csrf()}
    first = reply(auth, conversation.id, fields, htmx=True)
    retry = reply(auth, conversation.id, fields, htmx=True)
    assert first.status_code == retry.status_code == 200
    assert 'id="reply-form"' in first.text
    assert without_client_id(retry.text) == without_client_id(first.text)
    assert count(Message) == messages + 1
    assert count(ChatEvent, ChatEvent.kind == ChatEvent.MESSAGE) == events + 1


def test_a_plain_agent_reply_retried_is_stored_once_and_both_answers_redirect(auth, conversation):
    messages = count(Message)
    fields = {"body": "Sent with JavaScript off.", "client_id": "plain-post"}
    first, retry = (reply(auth, conversation.id, fields) for _ in range(2))
    assert first.status_code == retry.status_code == 303
    assert first.headers["location"] == retry.headers["location"]
    assert count(Message) == messages + 1


def test_agent_replies_with_different_client_ids_are_two_messages(auth, conversation):
    messages = count(Message)
    for client_id in ("a1", "a2"):
        assert reply(auth, conversation.id, {"body": "ok", "client_id": client_id},
                     htmx=True).status_code == 200
    assert count(Message) == messages + 2


def test_a_retry_that_reaches_the_write_after_the_first_committed_is_stored_once(
        app, conversation):
    """Two sends of one post at once both pass the early look-up; the second to take the
    writer lock meets the unique (conversation, sender, client id) index, keeps nothing of its
    own and answers with the first's message."""
    from app.chat import service
    from app.db import connection

    events = count(ChatEvent)
    with app.app_context(), connection():
        conv = Conversation.get_by_id(conversation.id)
        first = service.post_visitor_message(conv.site, conv.visitor, "twice at once",
                                             client_id="raced")
        second = service.post_visitor_message(conv.site, conv.visitor, "twice at once",
                                              client_id="raced")
    assert second.id == first.id and second.replayed and not first.replayed
    assert count(Message, Message.client_id == "raced") == 1
    assert count(ChatEvent) == events + 1
