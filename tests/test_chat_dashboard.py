"""The team's side of chat: sites, the inbox, one conversation, files, saved replies, and the
border between workspaces."""

import re

from app.chat import service
from app.chat.models import Attachment, ChatEvent, Conversation, Message, SavedReply
from app.db import connection
from app.widget.models import Site
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    PDF,
    WidgetVisitor,
    agent_fixture,
    chat_state,
    conversation_fixture,
    count,
    fts_hits,
    get,
    make_site,
    online_fixture,
    png_bytes,
    reply,
    rival_fixture,
    set_visitor_connected,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.mailcatcher import text_of

SITE_FORM = {
    "name": "Corner Shop",
    "allowed_origins": "https://Shop.Example.com/\nhttp://LOCALHOST:8000\nhttps://shop.example.com:443",
    "greeting": "Hello! Ask us anything.",
    "away_message": "We are out; leave your e-mail.",
    "accent_color": "#AA33CC",
    "retention_days": "30",
}


def conv_ids(html: str) -> list[int]:
    """Conversation ids of the inbox rows, top to bottom."""
    return [int(i) for i in re.findall(r'<li id="conv-(\d+)" class="conv-row', html)]


def start_conversations(app, site, bodies) -> list[int]:
    """One visitor per body, each writing it; returns the conversation ids in that order."""
    ids = []
    for body in bodies:
        guest = WidgetVisitor.arrive(app, site.site_key)
        assert guest.send(body).status_code == 200
        ids.append(guest.conversation().id)
    return ids


def conversation_url(conversation_id, tail="") -> str:
    return f"/dashboard/conversations/{conversation_id}{tail}"


# --- sites ---------------------------------------------------------------------------------------


def test_owner_creates_a_site_with_normalized_origins(auth, ws):
    response = auth.post_form("/dashboard/sites", SITE_FORM)
    assert response.status_code == 303
    site = get(Site)
    assert response.headers["Location"] == f"/dashboard/sites/{site.id}"
    assert site.workspace_id == ws
    assert site.origins == ["https://shop.example.com", "http://localhost:8000"]
    assert site.accent_color == "#aa33cc"
    assert site.retention_days == 30
    assert site.site_key.startswith("site_")


def test_site_page_shows_the_snippet_to_paste(auth, site):
    html = text(auth.get(f"/dashboard/sites/{site.id}"))
    assert f'/widget.js" data-site="{site.site_key}"' in html


BAD_ORIGINS = [
    "javascript:alert(1)",
    "shop.example.com",
    "https://x.com/path",
    "https://x.com/?q=1",
    "https://user@x.com",
    "ftp://files.example.com",
    "https://shop.example.com\nhttps://x.com/path",  # one bad line spoils the lot
]


def test_site_with_a_bad_origin_is_refused_beside_the_field(auth):
    for origin in BAD_ORIGINS:
        response = auth.post_form("/dashboard/sites", {**SITE_FORM, "allowed_origins": origin},
                                  htmx=True)
        assert response.status_code == 422, origin
        error = re.search(r'<p class="error" id="allowed_origins-error">([^<]*)</p>',
                          text(response))
        assert error, origin
        assert "is not an origin like https://shop.example.com" in error.group(1), origin
    assert count(Site) == 0


BAD_SETTINGS = [
    ("accent_color", "red", "Use a colour like #4338ca."),
    ("accent_color", "#12345", "Use a colour like #4338ca."),
    ("accent_color", "#4338ca;}body{x:y", "Use a colour like #4338ca."),
    ("retention_days", "0", "Choose between 1 and 3,650 days."),
    ("retention_days", "3651", "Choose between 1 and 3,650 days."),
    ("name", "", "Give the site a name."),
    ("allowed_origins", "", "Add at least one origin where the widget may appear."),
]


def test_site_with_bad_settings_is_refused_with_the_reason(auth):
    for field, value, message in BAD_SETTINGS:
        response = auth.post_form("/dashboard/sites", {**SITE_FORM, field: value}, htmx=True)
        assert response.status_code == 422, (field, value)
        assert f'id="{field}-error">{message}' in text(response), (field, value)
    assert count(Site) == 0


def test_owner_updates_a_site_and_bad_input_changes_nothing(auth, site):
    before = chat_state()
    response = auth.post_form(f"/dashboard/sites/{site.id}",
                              {**SITE_FORM, "allowed_origins": "nope"}, htmx=True)
    assert response.status_code == 422
    assert chat_state() == before
    response = auth.post_form(f"/dashboard/sites/{site.id}", {**SITE_FORM, "name": "Renamed"})
    assert response.status_code == 303
    assert get(Site).name == "Renamed"


def test_agent_cannot_create_or_change_a_site(agent, site):
    client = agent["client"]
    before = chat_state()
    response = client.post_form("/dashboard/sites", SITE_FORM)
    assert response.status_code == 403
    assert "Your account is not allowed to do that." in text(response)
    assert client.post_form(f"/dashboard/sites/{site.id}", SITE_FORM).status_code == 403
    assert chat_state() == before
    # The snippet is still theirs to read.
    assert f'data-site="{site.site_key}"' in text(client.get(f"/dashboard/sites/{site.id}"))


def test_another_workspaces_site_is_not_found(auth, site, rival):
    their = rival["site"]
    before = chat_state()
    for response in (auth.get(f"/dashboard/sites/{their.id}"),
                     auth.post_form(f"/dashboard/sites/{their.id}", SITE_FORM)):
        assert response.status_code == 404
        assert "There is nothing at this address." in text(response)
        assert their.site_key not in text(response)
    assert chat_state() == before
    listing = text(auth.get("/dashboard/sites"))
    assert "Shop" in listing and "Rival shop" not in listing


# --- the inbox ----------------------------------------------------------------------------------


def test_inbox_lists_conversations_newest_activity_first(app, auth, site, online):
    first, second, third = start_conversations(app, site, ["one", "two", "three"])
    assert conv_ids(text(auth.get("/dashboard/inbox"))) == [third, second, first]
    # The first visitor writes again: their conversation moves to the top.
    guest = get(Conversation, Conversation.id == first).visitor
    with app.app_context(), connection():
        service.post_visitor_message(site, guest, "one more thing")
    assert conv_ids(text(auth.get("/dashboard/inbox"))) == [first, third, second]


def test_inbox_filters_open_resolved_mine_and_all(app, auth, site, online):
    a, b, c = start_conversations(app, site, ["a", "b", "c"])
    assert auth.post_form(conversation_url(a, "/status"), {"status": "resolved"}).status_code == 303
    assert auth.post_form(conversation_url(b, "/assign"), {"assignee": "me"}).status_code == 303

    def listed(filter_):
        response = auth.get(f"/dashboard/inbox?filter={filter_}")
        assert response.status_code == 200
        return sorted(conv_ids(text(response)))

    assert listed("open") == [b, c]
    assert listed("resolved") == [a]
    assert listed("mine") == [b]
    assert listed("all") == [a, b, c]
    assert listed("nonsense") == [b, c]  # an unknown filter falls back to open


def test_inbox_shows_25_conversations_a_page(app, auth, site, online):
    ids = start_conversations(app, site, [f"question {i}" for i in range(26)])
    page1 = text(auth.get("/dashboard/inbox?filter=all"))
    assert conv_ids(page1) == list(reversed(ids))[:25]
    assert 'href="/dashboard/inbox?filter=all&amp;page=2">Older' in page1
    page2 = text(auth.get("/dashboard/inbox?filter=all&page=2"))
    assert conv_ids(page2) == [ids[0]]
    assert ">Older<" not in page2 and ">Newer<" in page2
    assert auth.get("/dashboard/inbox?page=0").status_code == 200
    assert auth.get("/dashboard/inbox?page=abc").status_code == 200


def test_inbox_counts_unread_conversations(app, auth, site, online):
    first, second = start_conversations(app, site, ["hello", "hi"])
    guest = get(Conversation, Conversation.id == first).visitor
    with app.app_context(), connection():
        service.post_visitor_message(site, guest, "still there?")
    html = text(auth.get("/dashboard/inbox"))
    assert 'data-unread="2"' in html
    assert "<title>(2) Inbox" in html
    row = re.search(rf'<li id="conv-{first}".*?</li>', html, re.S).group(0)
    assert '<span class="badge">2<span class="visually-hidden"> unread</span>' in row

    auth.get(conversation_url(first))
    html = text(auth.get("/dashboard/inbox"))
    assert 'data-unread="1"' in html


def test_viewing_a_conversation_marks_it_read_and_the_visitor_sees_seen(auth, visitor,
                                                                         conversation):
    assert '<p id="seen" class="w-seen"></p>' in text(visitor.chat())
    assert auth.get(conversation_url(conversation.id)).status_code == 200
    conv = get(Conversation, Conversation.id == conversation.id)
    assert conv.unread_count == 0
    assert conv.agent_read_message_id == get(Message).id
    assert '<p id="seen" class="w-seen">Seen</p>' in text(visitor.chat())
    # A new visitor message is not seen yet.
    visitor.send("And one more")
    assert '<p id="seen" class="w-seen"></p>' in text(visitor.chat())
    assert auth.post_form(conversation_url(conversation.id, "/read")).status_code == 204
    assert '<p id="seen" class="w-seen">Seen</p>' in text(visitor.chat())


def test_message_text_is_escaped_in_the_inbox_and_the_conversation(auth, site, online, visitor):
    visitor.send('<script>alert("inbox")</script><b>bold</b>')
    conv = visitor.conversation()
    for url in ("/dashboard/inbox", conversation_url(conv.id), "/dashboard/inbox?filter=all"):
        html = text(auth.get(url))
        assert "<script>alert" not in html, url
        assert "<b>bold" not in html, url
        assert "&lt;script&gt;alert(&#34;inbox&#34;)&lt;/script&gt;" in html, url


def test_inbox_needs_a_login(client):
    response = client.get("/dashboard/inbox")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# --- one conversation -----------------------------------------------------------------------------


def test_agent_reply_reaches_the_visitors_chat(auth, user, visitor, conversation):
    response = reply(auth, conversation.id, {"body": "Yes, we ship to Iceland."}, htmx=True)
    assert response.status_code == 200
    assert 'id="reply-form"' in text(response)
    stored = get(Message, Message.sender == Message.AGENT)
    assert (stored.body, stored.author_id) == ("Yes, we ship to Iceland.", user.id)
    html = text(visitor.chat())
    assert "Yes, we ship to Iceland." in html
    assert '<span class="w-who">Olive</span>' in html


def test_agent_reply_with_a_file_reaches_the_visitor(auth, visitor, conversation):
    response = reply(auth, conversation.id, {"body": ""},
                     file=(PDF, "price list.pdf", "application/octet-stream"))
    assert response.status_code == 303
    attachment = get(Attachment)
    assert (attachment.filename, attachment.content_type) == ("price list.pdf", "application/pdf")
    assert "price list.pdf" in text(visitor.chat())


def test_empty_reply_is_refused_with_a_message(auth, conversation):
    before = chat_state()
    response = reply(auth, conversation.id, {"body": "  "}, htmx=True)
    assert response.status_code == 422
    assert "Write a message or attach a file." in text(response)
    assert chat_state() == before


def test_too_long_reply_is_refused_with_a_message(auth, conversation):
    before = chat_state()
    response = reply(auth, conversation.id, {"body": "x" * 5001}, htmx=True)
    assert response.status_code == 422
    assert "At most 5,000 characters." in text(response)
    assert chat_state() == before


def test_reply_to_an_absent_visitor_with_an_email_is_emailed_to_them(auth, visitor, conversation,
                                                                      smtp):
    visitor.profile(name="Ann", email="ann@example.com")
    reply(auth, conversation.id, {"body": "Your parcel left today <3"})
    mail = smtp.wait_for("ann@example.com", "Shop answered your message")
    assert "Olive from Shop answered you:" in text_of(mail)
    assert "Your parcel left today <3" in text_of(mail)


def test_reply_to_a_connected_visitor_is_not_emailed(auth, ws, visitor, conversation, smtp):
    visitor.profile(name="Ann", email="ann@example.com")
    set_visitor_connected(conversation.id, ws)
    reply(auth, conversation.id, {"body": "Right here!"})
    assert count(Message, Message.sender == Message.AGENT) == 1
    assert smtp.to("ann@example.com") == []


def test_resolve_and_reopen_a_conversation(auth, visitor, conversation):
    url = conversation_url(conversation.id, "/status")
    assert auth.post_form(url, {"status": "resolved"}).status_code == 303
    assert get(Conversation).status == Conversation.RESOLVED
    assert "Reopen" in text(auth.get(conversation_url(conversation.id)))
    # With htmx the answer is the status line as it now stands: the page is not reloaded.
    response = auth.post_form(url, {"status": "open"}, htmx=True)
    assert response.status_code == 200 and "HX-Redirect" not in response.headers
    assert "Status: <strong>Open</strong>" in text(response)
    assert get(Conversation).status == Conversation.OPEN
    # A visitor writing to a resolved conversation opens it again.
    auth.post_form(url, {"status": "resolved"})
    visitor.send("One more question")
    assert get(Conversation).status == Conversation.OPEN


def test_unknown_status_is_refused_and_nothing_changes(auth, conversation):
    before = chat_state()
    response = auth.post_form(conversation_url(conversation.id, "/status"), {"status": "closed"})
    assert response.status_code == 400
    assert "Unknown status." in text(response)
    assert chat_state() == before


def test_assign_to_me_to_a_teammate_and_to_nobody(auth, user, agent, conversation):
    url = conversation_url(conversation.id, "/assign")
    assert auth.post_form(url, {"assignee": "me"}).status_code == 303
    assert get(Conversation).assignee_id == user.id
    assert auth.post_form(url, {"assignee": str(agent["user"].id)}).status_code == 303
    assert get(Conversation).assignee_id == agent["user"].id
    assert "Andy Agent" in text(auth.get("/dashboard/inbox"))
    # The teammate finds it under "mine".
    mine = text(agent["client"].get("/dashboard/inbox?filter=mine"))
    assert conv_ids(mine) == [conversation.id]
    assert auth.post_form(url, {"assignee": ""}).status_code == 303
    assert get(Conversation).assignee_id is None


def test_assigning_to_someone_outside_the_workspace_is_refused(auth, conversation, rival):
    url = conversation_url(conversation.id, "/assign")
    auth.post_form(url, {"assignee": "me"})
    before = chat_state()
    for outsider in (str(rival["user"].id), "99999"):
        response = auth.post_form(url, {"assignee": outsider})
        assert response.status_code == 422
        assert "Choose a member of this workspace." in text(response)
    assert chat_state() == before


def test_agent_deletes_a_conversation_with_its_files_search_entries_and_events(
        app, auth, site, visitor, conversation):
    visitor.send("My passport number is zq881", file=(png_bytes(), "passport.png", "image/png"))
    auth.get(conversation_url(conversation.id))  # a read event
    attachment = get(Attachment)
    assert fts_hits("zq881") != []
    kept = WidgetVisitor.arrive(app, site.site_key)
    kept.send("Another customer mentions zq881 too")

    response = auth.post_form(conversation_url(conversation.id, "/delete"))
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/inbox"
    assert count(Conversation, Conversation.id == conversation.id) == 0
    assert count(Message, Message.conversation == conversation.id) == 0
    assert count(Attachment) == 0
    assert fts_hits("passport") == []
    assert len(fts_hits("zq881")) == 1  # only the other conversation's message
    with connection():
        events = [(e.kind, e.actor) for e in ChatEvent.select().where(
            ChatEvent.conversation_id == conversation.id)]
    assert events == [(ChatEvent.DELETED, "agent")]
    assert auth.get(f"/dashboard/attachments/{attachment.id}").status_code == 404
    assert auth.get(conversation_url(conversation.id)).status_code == 404
    assert "passport" not in text(visitor.chat())


def test_agent_deletes_a_visitor_with_all_their_conversations_in_one_action(
        app, auth, site, visitor, conversation, rival):
    from app.widget.models import Visitor

    visitor.send("My card ends zq4471", file=(png_bytes(), "card.png", "image/png"))
    with connection():  # a second conversation of the same visitor (an older, resolved one)
        older = Conversation.create(workspace=conversation.workspace_id, site=site,
                                    visitor=conversation.visitor_id, status=Conversation.RESOLVED)
        Message.create(conversation=older, workspace_id=older.workspace_id,
                       sender=Message.VISITOR, body="Earlier zq4471 question")
    kept = WidgetVisitor.arrive(app, site.site_key)
    kept.send("Someone else entirely")
    # Another workspace's conversation id: nothing to see, nothing deleted.
    assert auth.post_form(conversation_url(rival["conversation"].id, "/visitor/delete")).status_code == 404

    response = auth.post_form(conversation_url(conversation.id, "/visitor/delete"))
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/inbox"
    assert count(Visitor, Visitor.id == conversation.visitor_id) == 0
    assert count(Conversation, Conversation.visitor == conversation.visitor_id) == 0
    assert count(Message, Message.body.contains("zq4471")) == 0
    assert count(Attachment, Attachment.workspace_id == conversation.workspace_id) == 0
    assert fts_hits("zq4471") == []
    with connection():
        deleted = {e.conversation_id for e in ChatEvent.select().where(ChatEvent.kind == ChatEvent.DELETED)}
    assert deleted == {conversation.id, older.id}
    assert "Someone else entirely" in text(kept.chat())
    assert count(Conversation, Conversation.workspace == rival["ws"]) == 1  # untouched


def test_agent_corrects_the_visitors_details(auth, visitor, conversation):
    response = auth.post_form(conversation_url(conversation.id, "/visitor"),
                              {"name": "Ann Lee", "email": " ANN@Example.com "}, htmx=True)
    assert response.status_code == 200
    assert "Saved." in text(response)
    record = visitor.record()
    assert (record.name, record.email) == ("Ann Lee", "ann@example.com")
    assert count(ChatEvent, ChatEvent.kind == ChatEvent.VISITOR) == 1


def test_visitor_details_with_a_bad_email_are_refused(auth, visitor, conversation):
    before = chat_state()
    response = auth.post_form(conversation_url(conversation.id, "/visitor"),
                              {"name": "Ann", "email": "ann@"}, htmx=True)
    assert response.status_code == 422
    assert "Enter a valid e-mail address." in text(response)
    assert chat_state() == before


CONVERSATION_POSTS = [
    ("/messages", {"body": "Injected reply"}),
    ("/status", {"status": "resolved"}),
    ("/assign", {"assignee": "me"}),
    ("/delete", {}),
    ("/visitor", {"name": "Renamed", "email": "x@example.com"}),
    ("/read", {}),
    ("/typing", {}),
]


def test_another_workspaces_conversation_is_not_found_on_any_route(auth, conversation, rival):
    theirs = rival["conversation"].id
    before = chat_state()
    response = auth.get(conversation_url(theirs))
    assert response.status_code == 404
    assert "There is nothing at this address." in text(response)
    assert "Rival secret" not in text(response)
    for tail, data in CONVERSATION_POSTS:
        if tail == "/messages":  # the chat write, served at the ASGI root
            response = reply(auth, theirs, data)
        else:
            response = auth.post_form(conversation_url(theirs, tail), data)
        assert response.status_code == 404, tail
        assert "There is nothing at this address." in text(response), tail
    assert chat_state() == before


def test_rival_workspace_does_not_see_our_conversations(auth, conversation, rival):
    html = text(rival["client"].get("/dashboard/inbox?filter=all"))
    assert conv_ids(html) == [rival["conversation"].id]
    assert "Iceland" not in html


# --- files on the dashboard ---------------------------------------------------------------------


def test_dashboard_download_is_an_attachment_that_no_browser_runs(auth, site, online, visitor):
    visitor.send("", file=(png_bytes(), "receipt.png", "image/png"))
    attachment = get(Attachment)
    response = auth.get(f"/dashboard/attachments/{attachment.id}")
    assert response.status_code == 200
    assert response.data == png_bytes()
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"] == 'attachment; filename="receipt.png"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    inline = auth.get(f"/dashboard/attachments/{attachment.id}?inline=1")
    assert inline.headers["Content-Disposition"] == 'inline; filename="receipt.png"'


def test_another_workspaces_attachment_is_not_found(auth, rival):
    attachment = rival["attachment"]
    response = auth.get(f"/dashboard/attachments/{attachment.id}")
    assert response.status_code == 404
    assert "There is nothing at this address." in text(response)
    assert response.data != png_bytes()
    # Its own workspace gets it.
    assert rival["client"].get(f"/dashboard/attachments/{attachment.id}").status_code == 200


def test_attachments_need_a_login(app, rival):
    response = app.test_client().get(f"/dashboard/attachments/{rival['attachment'].id}")
    assert response.status_code == 302


# --- saved replies ------------------------------------------------------------------------------


def test_saved_replies_are_created_listed_and_deleted(auth, ws):
    response = auth.post_form("/dashboard/saved-replies", {"shortcut": "Ship", "body": "We ship in 2 days."})
    assert response.status_code == 303
    reply = get(SavedReply)
    assert (reply.shortcut, reply.workspace_id) == ("ship", ws)
    assert "/ship" in text(auth.get("/dashboard/saved-replies"))
    response = auth.post_form(f"/dashboard/saved-replies/{reply.id}/delete")
    assert response.status_code == 303
    assert count(SavedReply) == 0


def test_saved_reply_shortcut_must_be_unique_in_the_workspace(auth, rival):
    auth.post_form("/dashboard/saved-replies", {"shortcut": "ship", "body": "First"})
    before = chat_state()
    response = auth.post_form("/dashboard/saved-replies", {"shortcut": "SHIP", "body": "Second"},
                              htmx=True)
    assert response.status_code == 422
    assert "A saved reply with this shortcut exists already." in text(response)
    assert chat_state() == before
    # Another workspace has its own shortcuts.
    response = rival["client"].post_form("/dashboard/saved-replies", {"shortcut": "ship", "body": "Theirs"})
    assert response.status_code == 303
    assert count(SavedReply) == 2


BAD_SAVED_REPLIES = [
    ("", "text", "Give it a shortcut."),
    ("two words", "text", "Use letters, digits, - and _ only."),
    ("ok", "", "Write the reply."),
]


def test_saved_reply_with_bad_input_is_refused(auth):
    for shortcut, body, message in BAD_SAVED_REPLIES:
        response = auth.post_form("/dashboard/saved-replies",
                                  {"shortcut": shortcut, "body": body}, htmx=True)
        assert response.status_code == 422, shortcut
        assert message in text(response), shortcut
    assert count(SavedReply) == 0


def test_saved_replies_stay_inside_their_workspace(auth, conversation, rival):
    rival["client"].post_form("/dashboard/saved-replies", {"shortcut": "secret", "body": "Rival text"})
    theirs = get(SavedReply)
    assert "Rival text" not in text(auth.get("/dashboard/saved-replies"))
    assert "Rival text" not in text(auth.get(conversation_url(conversation.id)))
    before = chat_state()
    response = auth.post_form(f"/dashboard/saved-replies/{theirs.id}/delete")
    assert response.status_code == 404
    assert "There is nothing at this address." in text(response)
    assert chat_state() == before


def test_saved_replies_are_offered_beside_the_reply_form(auth, conversation):
    auth.post_form("/dashboard/saved-replies", {"shortcut": "hours", "body": "Open 9 to 5."})
    html = text(auth.get(conversation_url(conversation.id)))
    # Not in the page (a workspace may keep thousands): found as the agent types.
    assert "Open 9 to 5." not in html
    assert 'hx-get="/dashboard/saved-replies/find"' in html
    found = text(auth.get("/dashboard/saved-replies/find?q=hou", headers={"HX-Request": "true"}))
    assert 'data-insert="Open 9 to 5." data-shortcut="hours"' in found



def test_an_accent_colour_too_light_for_white_text_is_refused(auth, user):
    from app.db import connection
    from app.widget.models import Site

    with connection():
        before = Site.select().count()
    response = auth.post_form("/dashboard/sites", {
        "name": "Pale", "allowed_origins": "https://pale.example", "greeting": "Hi",
        "away_message": "Away", "accent_color": "#ffee88", "retention_days": "30"})
    assert response.status_code == 422
    assert "White text is hard to read on this colour" in response.get_data(as_text=True)
    with connection():
        assert Site.select().count() == before
