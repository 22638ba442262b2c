"""Private notes: agents write notes in a conversation that their teammates see (on the page and
live) and its visitor never does: not in the widget's chat, its stream, the transcript or the
reply e-mails. A note's @mentions are rows of their own, and a mentioned member who is away
(no dashboard open) gets one e-mail about it."""

import asyncio
import re

import anyio
import pytest

from app.automations import service as automations
from app.automations.models import AutomationRun
from app.chat import live, notes, render, service, streams
from app.chat.models import ChatEvent, Conversation, Message, Presence
from app.chat.notes import NoteMention
from app.db import connection
from app.privacy.export import registry
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    AGENT_EMAIL,
    WidgetVisitor,
    agent_fixture,
    chat_state,
    conversation_fixture,
    count,
    get,
    online_fixture,
    png_bytes,
    reply,
    rival_fixture,
    run_async,
    set_agent_online,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import db_state
from tests.mailcatcher import text_of
from tests.test_chat_streams import WAIT, eventually, in_app, running_hub

OWNER = "owner@example.com"
SECRET = "Refund approved only because he is a VIP, do not tell him"
MARKUP = '<script>alert("note")</script><img src=x onerror=alert(1)>'


def note(client, conversation_id, body, htmx=True, **data):
    """A note from a signed-in agent: the reply form posted in its note mode."""
    return reply(client, conversation_id, {"body": body, "kind": "note", **data}, htmx=htmx)


def notes_in(conversation_id) -> list[Message]:
    with connection():
        return list(Message.select().where((Message.conversation == conversation_id)
                                           & (Message.sender == Message.NOTE)))


def mentions() -> list[tuple[int, int]]:
    with connection():
        return [(m.message_id, m.user_id) for m in NoteMention.select().order_by(NoteMention.id)]


def emails_to(smtp, address, subject_part) -> list:
    return [m for m in smtp.to(address) if subject_part in m["Subject"]]


# --- the team sees it ----------------------------------------------------------------------------


def test_a_note_is_stored_as_the_authors_private_note_and_shown_to_the_team(
        auth, agent, conversation, user):
    """Teammates read notes where they read the conversation, told apart by words, not colour."""
    response = note(auth, conversation.id, SECRET)
    assert response.status_code == 200, response.text
    (stored,) = notes_in(conversation.id)
    assert stored.author_id == user.id and stored.body == SECRET

    page = text(agent["client"].get(f"/dashboard/conversations/{conversation.id}"))
    assert SECRET in page
    (li,) = re.findall(rf'<li id="msg-{stored.id}"[^>]*>', page)
    assert 'class="msg msg-note"' in li and 'data-mentions=""' in li
    assert "Private note" in page


def test_the_answer_to_a_note_is_a_fresh_form_still_in_note_mode(auth, conversation):
    """An agent writing several notes never sends one to the visitor by mistake: the form stays
    a note form until they switch back."""
    html = note(auth, conversation.id, "first thought").text
    assert 'name="kind" value="note"' in html
    assert '<label for="note-body">Private note</label>' in html
    assert "Add note" in html
    # No typing address: writing a note never shows the visitor "typing…".
    assert "data-typing-url" not in html and 'id="reply-body"' not in html


def test_the_reply_form_switches_to_note_mode_and_back_keeping_what_was_typed(auth, conversation):
    """The mode switch is a plain link (works without JavaScript) that htmx swaps in place."""
    url = f"/dashboard/conversations/{conversation.id}/reply-form"
    form = text(auth.get(url, query_string={"mode": "note", "body": "half a thought"},
                         headers={"HX-Request": "true"}))
    assert '<form id="reply-form"' in form
    assert 'name="kind" value="note"' in form and "half a thought</textarea>" in form
    assert 'id="note-body-hint"' in form and 'aria-describedby="note-body-hint"' in form
    back = text(auth.get(url, query_string={"mode": "reply"}, headers={"HX-Request": "true"}))
    assert 'name="kind"' not in back and 'id="reply-body"' in back and "data-typing-url" in back
    # Without htmx: the whole conversation page, its form in note mode.
    page = text(auth.get(url, query_string={"mode": "note"}))
    assert "<html" in page and 'name="kind" value="note"' in page


# --- the visitor never does ----------------------------------------------------------------------


def test_a_note_never_shows_in_the_visitors_chat(auth, visitor, conversation):
    """The widget's chat, as a reload reads it from the server: the reply, not the note."""
    note(auth, conversation.id, SECRET)
    assert reply(auth, conversation.id, {"body": "We can refund you."}, htmx=True).status_code == 200
    chat = text(visitor.chat())
    assert "We can refund you." in chat
    assert SECRET not in chat and "msg-note" not in chat and "Private note" not in chat


def test_the_visitors_stream_carries_no_note_live_or_replayed(app, ws, auth, conversation):
    """The visitor's SSE stream: a note written before it opened is not in its replay, and
    one written while it is open never arrives; the reply after each does."""
    with connection():
        first = streams.workspace_seq(ws)
        owner = Conversation.get_by_id(conversation.id).workspace.memberships[0].user

    def write(kind, body):
        def go():
            conv = service.WORKSPACE_CONVERSATION.first(conversation.id, ws)
            if kind == "note":
                return notes.post_note(conv, owner, body).id
            return service.post_agent_reply(conv, owner, body).id
        return in_app(app, go)

    write("note", "missed note " + SECRET)
    write("reply", "missed reply")

    async def until(events, marker):
        seen = ""
        while marker not in seen:
            seen += (await asyncio.wait_for(anext(events), WAIT)).decode()
        return seen

    async def scenario():
        async with running_hub(app) as hub:
            events = streams.follow(hub, after=first, presence=(Presence.VISITOR, ws, conversation.id),
                                    workspace_id=ws, conversation_id=conversation.id)
            try:
                replayed = await until(events, "missed reply")
                await eventually(lambda: in_app(app, service.visitor_connected, conversation.id))
                await anyio.to_thread.run_sync(write, "note", "live note " + SECRET)
                await anyio.to_thread.run_sync(write, "reply", "live reply")
                followed = await until(events, "live reply")
            finally:
                await events.aclose()
            return replayed, followed

    replayed, followed = run_async(scenario())
    for seen in (replayed, followed):
        assert SECRET not in seen and "msg-note" not in seen


def test_a_note_event_renders_nothing_for_the_visitor_and_leaves_the_inbox_row(
        app, auth, conversation):
    """Rendered once per audience: agents get the note in the open conversation only (the
    inbox keeps telling where the talk with the visitor stands), the visitor nothing."""
    note(auth, conversation.id, MARKUP)
    with connection():
        row = ChatEvent.select().where(ChatEvent.kind == ChatEvent.MESSAGE).order_by(
            ChatEvent.id.desc()).first()
    [sse] = render.Renderer(app).events([(row, (live.AGENT, live.VISITOR))])
    assert sse[live.VISITOR] is None
    agent_html = sse[live.AGENT].decode()
    assert f'hx-swap-oob="beforeend:#messages-{conversation.id}"' in agent_html
    assert 'class="msg msg-note"' in agent_html and "Private note" in agent_html
    assert "inbox-rows" not in agent_html and "conv-" not in agent_html
    # Markup in a note stays text.
    assert "<script>" not in agent_html and "<img src=x" not in agent_html
    assert "&lt;script&gt;" in agent_html


def test_a_note_changes_neither_the_inbox_nor_the_visitors_seen_mark(app, auth, conversation):
    """Reading a conversation whose newest message is a note sends the visitor no new "Seen";
    the inbox row keeps the visitor's words as its preview, its time and its status."""
    with connection():
        before = Conversation.get_by_id(conversation.id)
    in_app(app, lambda: service.mark_read(Conversation.get_by_id(conversation.id)))
    with connection():
        read_upto = Conversation.get_by_id(conversation.id).agent_read_message_id
        reads = ChatEvent.select().where(ChatEvent.kind == ChatEvent.READ).count()
    note(auth, conversation.id, "Internal: check stock first")
    changed = in_app(app, lambda: service.mark_read(Conversation.get_by_id(conversation.id)))
    with connection():
        after = Conversation.get_by_id(conversation.id)
        assert ChatEvent.select().where(ChatEvent.kind == ChatEvent.READ).count() == reads
    assert changed is False  # nothing the visitor can see was unread
    assert after.agent_read_message_id == read_upto
    assert (after.last_preview, after.last_activity_at, after.status) == (
        before.last_preview, before.last_activity_at, before.status)


def test_the_transcript_email_leaves_notes_out(auth, visitor, conversation, smtp):
    """The copy a visitor asks for is of their conversation as they saw it."""
    assert visitor.profile(email="ann@example.com").status_code == 200
    note(auth, conversation.id, SECRET)
    reply(auth, conversation.id, {"body": "Your refund is on its way."}, htmx=True)
    assert visitor.transcript().status_code == 200
    mail = smtp.wait_for("ann@example.com", "Your conversation with Shop")
    body = text_of(mail) + mail.get_body(preferencelist=("html",)).get_content()
    assert "Your refund is on its way." in body
    assert SECRET not in body


def test_no_reply_email_is_sent_for_a_note(app, auth, visitor, conversation, smtp):
    """The visitor left an address and is gone: replies are e-mailed to them, notes never,
    even if a note's id reached the e-mail task."""
    assert visitor.profile(email="ann@example.com").status_code == 200
    note(auth, conversation.id, SECRET)
    (stored,) = notes_in(conversation.id)
    from app.chat import notices

    with app.app_context(), connection():
        notices.email_reply(stored.id)
    reply(auth, conversation.id, {"body": "Answer for you."}, htmx=True)
    mail = smtp.wait_for("ann@example.com", "Shop answered your message")
    assert "Answer for you." in text_of(mail)
    assert all(SECRET not in text_of(m) for m in smtp.to("ann@example.com"))
    assert len(emails_to(smtp, "ann@example.com", "answered your message")) == 1


def test_a_note_starts_no_chat_automation(app, ws, auth, conversation):
    """Automations hear what visitors do: a note is the team's own and starts none."""
    with app.app_context(), connection():
        automation = automations.create_automation(
            ws, name="On message", flow="http_request", trigger="chat",
            chat_event="message_received",
            config={"method": "POST", "url": "https://example.com/hook", "body": "{}",
                    "expected_status": "2xx"})
    note(auth, conversation.id, "internal only")
    assert count(AutomationRun, AutomationRun.automation == automation.id) == 0


def test_the_workspace_export_marks_notes_and_a_members_export_holds_their_mentions(
        app, ws, auth, agent, conversation, user):
    """The owner's export tells notes from replies; the mentioned member's own export lists
    the notes that named them, and nobody else's mentions."""
    note(auth, conversation.id, "@Andy please look")
    (stored,) = notes_in(conversation.id)
    kinds = {k.name: k for k in registry.KINDS}
    with connection():
        whole = registry.Scope(ws, user.id, user.email, personal=False)
        exported = {m.id: kinds["messages"].to_json(m) for m in kinds["messages"].query(whole)}
        assert exported[stored.id]["sender"] == "note"
        mine = registry.Scope(ws, agent["user"].id, AGENT_EMAIL, personal=True)
        assert [kinds["note_mentions"].to_json(m) for m in kinds["note_mentions"].query(mine)] == [
            {"id": 1, "message_id": stored.id, "user_id": agent["user"].id,
             "created_at": registry.plain(stored.created_at)}]
        owner_own = registry.Scope(ws, user.id, user.email, personal=True)
        assert list(kinds["note_mentions"].query(owner_own)) == []


# --- mentions ------------------------------------------------------------------------------------


def test_a_mention_of_an_away_member_is_a_row_and_one_email(app, ws, auth, agent, conversation,
                                                            smtp, user):
    """Andy has no dashboard open: the note is stored with his mention and he is e-mailed
    once, with a link to the conversation; a retry of the same post sends nothing more."""
    response = note(auth, conversation.id, "@andy can you check the <b>refund</b>?",
                    client_id="note-retry-1")
    assert response.status_code == 200
    (stored,) = notes_in(conversation.id)
    assert mentions() == [(stored.id, agent["user"].id)]
    mail = smtp.wait_for(AGENT_EMAIL, "mentioned you in a note on Shop")
    assert "Olive Owner mentioned you" in text_of(mail)
    assert "can you check the <b>refund</b>?" in text_of(mail)
    assert "&lt;b&gt;refund" in mail.get_body(preferencelist=("html",)).get_content()
    assert f"/dashboard/conversations/{conversation.id}#msg-{stored.id}" in text_of(mail)
    assert mail["List-Unsubscribe"]  # not essential: one click stops them

    assert note(auth, conversation.id, "@andy can you check the <b>refund</b>?",
                client_id="note-retry-1").status_code == 200
    assert len(notes_in(conversation.id)) == 1 and len(mentions()) == 1
    assert len(emails_to(smtp, AGENT_EMAIL, "mentioned you")) == 1
    page = text(agent["client"].get(f"/dashboard/conversations/{conversation.id}"))
    (li,) = re.findall(rf'<li id="msg-{stored.id}"[^>]*>', page)
    assert f'data-mentions="{agent["user"].id}"' in li


def test_a_mention_of_a_member_with_the_dashboard_open_sends_no_email(
        app, ws, auth, agent, conversation, smtp):
    """Andy sees the note arrive on his open dashboard: the mention is kept, no e-mail."""
    set_agent_online(ws, agent["user"].id)
    note(auth, conversation.id, "@AndyAgent here is the context")
    assert [user_id for _, user_id in mentions()] == [agent["user"].id]
    assert emails_to(smtp, AGENT_EMAIL, "mentioned you") == []


def test_a_member_with_a_dashboard_of_another_workspace_open_is_away_here(
        app, ws, auth, agent, conversation, smtp, rival):
    """Only a dashboard of the note's workspace shows the note: one of another is away."""
    set_agent_online(rival["ws"], agent["user"].id)
    note(auth, conversation.id, "@Andy ping")
    assert len(emails_to(smtp, AGENT_EMAIL, "mentioned you")) == 1


def test_who_a_mention_names(app, ws, agent, user, rival):
    """@ and the full name without spaces, or the first name when no other member has it,
    either case; never oneself, never an e-mail address, never another workspace's member."""
    from tests.conftest import make_user

    with connection():
        from app.accounts.models import Membership

        twin = make_user(app, email="andy2@example.com", name="Andy Second")
        Membership.create(workspace=ws, user=twin, role=Membership.AGENT)

    def named(body, author=user.id):
        with connection():
            return [m.id for m in notes.mentioned_members(ws, body, author)]

    andy, owner = agent["user"].id, user.id
    assert named("@andyagent, look.") == [andy]
    assert named("@AndySecond!") == [twin.id]
    assert named("@Andy ambiguous") == []  # two Andys: the full name says which
    assert named("@Olive and @Olive again", author=andy) == [owner]
    assert named("@Olive my own note") == []  # naming oneself names nobody
    assert named("mail andy@example.com or olive@example.com", author=twin.id) == []
    assert named("@Rita is not here") == []  # Rita Rival is another workspace's
    assert named("@OliveOwner. @andyagent") == [andy]


# --- bad input -----------------------------------------------------------------------------------


def test_an_empty_note_is_refused_beside_the_field_and_stores_nothing(auth, conversation):
    """Blank words are no note: said beside the note's box (422), in the note form still."""
    before = chat_state()
    response = note(auth, conversation.id, "   \n ")
    assert response.status_code == 422
    assert "Write the note first." in response.text
    assert 'name="kind" value="note"' in response.text  # still the note form
    assert chat_state() == before


def test_a_note_with_a_file_is_refused_and_stores_nothing(auth, conversation):
    """Files go to the visitor with a reply; a note posted with one is refused whole."""
    before = chat_state()
    response = reply(auth, conversation.id, {"body": "see file", "kind": "note"}, htmx=True,
                     file=(png_bytes(), "x.png", "image/png"))
    assert response.status_code == 422
    assert notes.NOTE_TEXT_ONLY in response.text
    assert chat_state() == before


def test_a_note_on_another_workspaces_conversation_is_a_404(auth, rival):
    """Another workspace's conversation id is not found, for a note and for the mode switch."""
    before = chat_state()
    response = note(auth, rival["conversation"].id, "sneaky @Rita")
    assert response.status_code == 404
    switch = auth.get(f"/dashboard/conversations/{rival['conversation'].id}/reply-form?mode=note")
    assert switch.status_code == 404
    assert chat_state() == before and mentions() == []


def test_a_note_without_its_csrf_token_is_refused(auth, conversation):
    """A note is a chat write like a reply: the same CSRF rule (400, nothing stored)."""
    before = db_state(Message, NoteMention)
    response = reply(auth, conversation.id, {"body": "forged", "kind": "note"}, csrf=False)
    assert response.status_code == 400
    assert db_state(Message, NoteMention) == before


def test_an_unknown_kind_is_an_ordinary_reply(auth, conversation):
    """Only kind=note makes a note: anything else the form might carry is the usual reply."""
    assert reply(auth, conversation.id, {"body": "plain", "kind": "notes"}, htmx=True).status_code == 200
    assert get(Message, Message.body == "plain").sender == Message.AGENT


@pytest.mark.parametrize("mode", ["note", "reply", "", "<script>"])
def test_the_mode_switch_answers_any_mode_with_a_form(auth, conversation, mode):
    """Only mode=note is note mode; anything else is the reply form, and what was typed
    comes back as text."""
    response = auth.get(f"/dashboard/conversations/{conversation.id}/reply-form",
                        query_string={"mode": mode, "body": MARKUP}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert ('name="kind" value="note"' in text(response)) == (mode == "note")
    assert "<script>" not in text(response)
