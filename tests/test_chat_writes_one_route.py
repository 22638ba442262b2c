"""Each chat write has one route (app/chat/wire.py) and one set of rules: every refusal is
answered the same way whatever the form (htmx, plain post, with a file), nothing is stored,
and the Flask app has no view of its own for either write."""

import pytest

from app.chat.models import Attachment, Message
from tests.chat_fixtures import (  # noqa: F401  (fixtures by name)
    PDF,
    WidgetVisitor,
    asgi_request,
    chat_state,
    conversation_fixture,
    count,
    online_fixture,
    png_bytes,
    reply,
    rival_fixture,
    site_fixture,
    visitor_fixture,
    ws_fixture,
)


def test_flask_has_no_view_for_either_write(app):
    assert "widget.message_create" not in app.view_functions
    assert "chat.conversation_reply" not in app.view_functions
    # Its test client (a request that reached Flask) finds no route: nothing is written.
    assert app.test_client().post("/widget/x/messages").status_code in (404, 405)


VISITOR_REFUSALS = [
    ({"body": ""}, None, 422, "Write a message or attach a file."),
    ({"body": "x" * 5001}, None, 422, "at most 5,000 characters"),
    ({"body": "hi", "email": "not-an-address"}, None, 422, "Enter a valid e-mail address"),
    ({"body": ""}, (b"<html><script>", "x.html", "text/html"), 422, "Only images"),
]


@pytest.mark.parametrize("fields, refused_file, status, says", VISITOR_REFUSALS)
@pytest.mark.parametrize("form", ["htmx", "plain", "with a file"])
def test_every_refusal_of_a_visitor_message_is_the_same_whatever_the_form(
        app, visitor, conversation, fields, refused_file, status, says, form):
    before = chat_state()
    headers = dict(visitor.headers)
    if form == "plain":
        headers.pop("HX-Request")
    file = refused_file or ((png_bytes(), "a.png", "image/png") if form == "with a file" else None)
    if form == "with a file" and refused_file is None and not fields["body"]:
        pytest.skip("a good file with an empty body is a valid message")
    files = {"file": (file[1], file[0], file[2])} if file else None
    answer = asgi_request(app, "POST", visitor.url("messages"), data=fields, files=files,
                          headers=headers)
    assert answer.status_code == status
    assert says in answer.text and 'id="compose"' in answer.text
    assert chat_state() == before


REPLY_REFUSALS = [
    ({"body": "  "}, None, 422, "Write a message or attach a file."),
    ({"body": "x" * 5001}, None, 422, "At most 5,000 characters."),
    ({"body": ""}, (b"\x00\x01binary", "x.bin", "application/octet-stream"), 422, "Only images"),
]


@pytest.mark.parametrize("fields, refused_file, status, says", REPLY_REFUSALS)
@pytest.mark.parametrize("htmx", [True, False])
def test_every_refusal_of_an_agent_reply_is_the_same_htmx_or_plain_post(
        auth, conversation, fields, refused_file, status, says, htmx):
    before = chat_state()
    answer = reply(auth, conversation.id, fields, htmx=htmx, file=refused_file)
    assert answer.status_code == status
    assert says in answer.text and 'id="reply-form"' in answer.text
    if not htmx:
        assert "<html" in answer.text  # the whole page, the message beside the field
    assert chat_state() == before


@pytest.mark.parametrize("htmx, status", [(True, 200), (False, 303)])
def test_a_reply_with_a_file_is_stored_htmx_or_plain_post(auth, conversation, htmx, status):
    answer = reply(auth, conversation.id, {"body": ""}, htmx=htmx,
                   file=(PDF, "prices.pdf", "application/octet-stream"))
    assert answer.status_code == status
    assert count(Attachment) == 1


@pytest.mark.parametrize("csrf, signed_in", [(False, True), (True, False)])
def test_a_reply_without_its_sessions_token_or_session_is_refused(app, auth, conversation, csrf,
                                                                  signed_in):
    before = chat_state()
    if not signed_in:
        token = auth.csrf()
        answer = asgi_request(app, "POST", f"/dashboard/conversations/{conversation.id}/messages",
                              data={"body": "no", "csrf_token": token})
    else:
        answer = reply(auth, conversation.id, {"body": "no"}, csrf=False, htmx=True)
    assert answer.status_code == 400 and "Form expired" in answer.text
    assert chat_state() == before


def test_another_workspaces_conversation_is_404(auth, conversation, rival):
    before = chat_state()
    assert reply(auth, rival["conversation"].id, {"body": "not mine"}).status_code == 404
    assert chat_state() == before


@pytest.mark.config(WTF_CSRF_SSL_STRICT=True)
@pytest.mark.parametrize("referer, stored", [(None, 0), ("https://evil.example/", 0),
                                             ("https://localhost/dashboard/inbox", 1)])
def test_on_https_a_reply_needs_a_same_origin_referer(app, auth, conversation, referer, stored):
    token = auth.csrf()  # first: it may send the session cookie again
    cookie = auth.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    answer = asgi_request(app, "POST", f"/dashboard/conversations/{conversation.id}/messages",
                          cookie, {"body": "over https", "csrf_token": token},
                          headers={"HX-Request": "true", **({"Referer": referer} if referer else {})},
                          base_url="https://localhost")
    assert answer.status_code == (200 if stored else 400)
    assert count(Message, Message.body == "over https") == stored


def test_a_session_due_for_its_seen_time_is_answered_by_the_route_and_sent_again(
        app, auth, conversation):
    token = auth.csrf()
    with auth.session_transaction() as session:
        session["seen"] -= 120
    answer = reply(auth, conversation.id, {"body": "later", "csrf_token": token}, htmx=True)
    assert answer.status_code == 200
    assert count(Message, Message.body == "later") == 1
    assert app.config["SESSION_COOKIE_NAME"] in answer.headers.get("set-cookie", "")


def test_the_first_message_of_a_visitor_opens_the_whole_chat(app, site, online):
    newcomer = WidgetVisitor.arrive(app, site.site_key)
    answer = newcomer.send("First words")
    assert answer.status_code == 200 and answer.headers["HX-Retarget"] == "#chat"
