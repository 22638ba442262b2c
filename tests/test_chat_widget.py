"""The chat widget as a visitor's browser uses it: the frame, the visitor token, messages,
files, away mode, plan and rate limits, and the visitor's own transcript and deletion."""

import re
from datetime import timedelta
from urllib.parse import unquote

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from app.chat.models import Attachment, ChatEvent, Conversation, Message
from app.db import connection, utcnow
from app.widget.models import Site, Visitor
from tests.chat_fixtures import (  # noqa: F401  (fixtures: `site_fixture` is `site`)
    AGENT_EMAIL,
    GIF,
    JPEG,
    PDF,
    TXT,
    WEBP,
    WidgetVisitor,
    agent_fixture,
    asgi_request,
    chat_state,
    conversation_fixture,
    count,
    get,
    make_site,
    online_fixture,
    png_bytes,
    reply,
    run_async,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.mailcatcher import text_of

OWNER = "owner@example.com"
BAD_SESSION = "This chat session is not valid; reload the page to start again."
FILE_REFUSED = ("Only images (PNG, JPEG, GIF, WebP), PDF and plain text files can be sent. "
                "This file is of another kind.")


def file_links(html: str) -> list[str]:
    return re.findall(r'href="(/widget/files/[^"]+)"', html)


# --- the frame and the loader ----------------------------------------------------------------


def test_frame_may_be_embedded_only_by_the_sites_origins(app, site):
    with connection():
        Site.update(allowed_origins="https://shop.example.com\nhttps://www.shop.example.com").where(
            Site.id == site.id).execute()
    response = app.test_client().get(f"/widget/{site.site_key}")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors https://shop.example.com https://www.shop.example.com" in csp
    assert "X-Frame-Options" not in response.headers
    assert f'data-site-key="{site.site_key}"' in text(response)


def test_unknown_site_key_shows_a_clear_404(app, site):
    response = app.test_client().get("/widget/site_doesnotexist")
    assert response.status_code == 404
    assert "This chat is not available." in text(response)


def test_disabled_site_shows_the_widget_as_unavailable(app, site):
    with connection():
        Site.update(enabled=False).where(Site.id == site.id).execute()
    http = app.test_client()
    response = http.get(f"/widget/{site.site_key}")
    assert response.status_code == 404
    assert "This chat is not available." in text(response)
    assert http.post(f"/widget/{site.site_key}/visitors").status_code == 404
    assert count(Visitor) == 0


def test_loader_is_served_as_cacheable_javascript(client):
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert "data-site" in text(response)


# --- the visitor token ---------------------------------------------------------------------------


def forged_token(site, public_id="x" * 22) -> str:
    return URLSafeTimedSerializer("not-our-secret", salt="lumnar.visitor").dumps(
        {"v": public_id, "s": site.id})


def test_visitor_actions_without_a_valid_token_are_refused_and_store_nothing(
        app, site, online, visitor):
    visitor.send("My own message")
    before = chat_state()
    tokens = {"missing": None, "garbage": "not-a-token",
              "forged": forged_token(site, visitor.record().public_id)}
    for endpoint in ("messages", "typing", "profile", "transcript", "delete"):
        for kind, token in tokens.items():
            headers = {"HX-Request": "true"}
            if token is not None:
                headers["X-Lumnar-Visitor"] = token
            response = asgi_request(  # the web process's ASGI app: both kinds of route
                app, "POST", f"/widget/{site.site_key}/{endpoint}", headers=headers,
                data={"body": "Injected", "email": "x@example.com", "name": "Mallory"})
            assert response.status_code == 401, (endpoint, kind)
            assert BAD_SESSION in text(response), (endpoint, kind)
    assert chat_state() == before


def test_visitor_cannot_read_the_chat_without_a_valid_token(app, site, online, visitor):
    visitor.send("Private words")
    response = app.test_client().get(f"/widget/{site.site_key}/chat",
                                      headers={"X-Lumnar-Visitor": forged_token(site)})
    assert response.status_code == 401
    assert "Private words" not in text(response)


def test_visitor_cannot_read_another_visitors_conversation(app, site, online, visitor):
    visitor.send("My order number is 5512")
    stranger = WidgetVisitor.arrive(app, site.site_key)
    html = text(stranger.chat())
    assert "5512" not in html
    assert "id=\"live\"" not in html  # no stream ticket for a conversation that is not theirs


def test_token_of_one_site_is_refused_on_another_site(app, ws, site, online, visitor):
    other = make_site(app, ws, name="Second shop", origins="https://second.example.com")
    before = chat_state()
    response = asgi_request(app, "POST", f"/widget/{other.site_key}/messages",
                            headers=visitor.headers, data={"body": "Hello there"})
    assert response.status_code == 401
    assert BAD_SESSION in text(response)
    assert visitor.http.get(f"/widget/{other.site_key}/chat",
                            headers=visitor.headers).status_code == 401
    assert chat_state() == before


# --- messages ----------------------------------------------------------------------------------


def test_first_message_starts_the_conversation_and_swaps_in_the_whole_chat(site, online, visitor):
    response = visitor.send("Hello, is anyone there?", page="https://shop.example.com/cart")
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#chat"
    assert response.headers["HX-Reswap"] == "innerHTML"
    html = text(response)
    assert 'sse-connect="/sse/visitor?ticket=' in html
    assert "Hello, is anyone there?" in html
    conv = visitor.conversation()
    assert conv.status == Conversation.OPEN
    assert conv.unread_count == 1
    assert conv.started_page_url == "https://shop.example.com/cart"

    second = visitor.send("Second question")
    assert second.status_code == 200
    assert "HX-Retarget" not in second.headers
    assert count(Conversation) == 1
    assert count(Message) == 2


def test_message_text_is_stored_as_sent_and_escaped_in_the_widget(site, online, visitor):
    body = '<script>alert("x")</script> <img src=x onerror=alert(1)> & "quotes"'
    assert visitor.send(body).status_code == 200
    assert get(Message).body == body
    html = text(visitor.chat())
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_urls_in_messages_become_safe_links(site, online, visitor):
    visitor.send("See https://shop.example.com/item?id=3&x=1, please.")
    html = text(visitor.chat())
    assert ('<a href="https://shop.example.com/item?id=3&amp;x=1" target="_blank" '
            'rel="noopener noreferrer nofollow ugc">') in html
    assert "</a>, please." in html  # the trailing comma is not part of the link


def test_javascript_urls_in_messages_stay_plain_text(site, online, visitor):
    visitor.send("click javascript:alert(1) now")
    html = text(visitor.chat())
    assert 'href="javascript' not in html
    assert "javascript:alert(1)" in html


def test_empty_message_is_refused_with_a_message(site, online, visitor):
    before = chat_state()
    response = visitor.send("   \r\n  ")
    assert response.status_code == 422
    assert "Write a message or attach a file." in text(response)
    assert chat_state() == before


def test_refused_empty_message_does_not_save_the_email_sent_with_it(site, visitor):
    before = chat_state()
    response = visitor.send("", email="ann@example.com", name="Ann")
    assert response.status_code == 422
    assert "Write a message or attach a file." in text(response)
    assert chat_state() == before


def test_message_of_5000_characters_is_accepted(site, online, visitor):
    body = "é" * 4999 + "!"
    assert visitor.send(body).status_code == 200
    assert get(Message).body == body


def test_message_of_5001_characters_is_refused_and_nothing_is_stored(site, online, visitor):
    before = chat_state()
    response = visitor.send("a" * 5001)
    assert response.status_code == 422
    assert "Messages can be at most 5,000 characters." in text(response)
    assert chat_state() == before


def test_typing_is_recorded_only_inside_a_conversation(site, online, visitor):
    assert visitor.typing().status_code == 204
    assert count(ChatEvent) == 0
    visitor.send("Hi")
    assert visitor.typing().status_code == 204
    assert count(ChatEvent, ChatEvent.kind == ChatEvent.TYPING,
                 ChatEvent.actor == "visitor") == 1


# --- away mode --------------------------------------------------------------------------------


def test_while_the_team_is_away_a_message_without_email_is_kept_and_an_email_asked_for(
        site, visitor, smtp):
    # Refused until issue 13: the visitor's first words were lost. Kept now; the whole chat
    # comes back asking where to answer (tests/test_widget_away.py has the rest).
    response = visitor.send("Anyone?")
    assert response.status_code == 200
    assert get(Message).body == "Anyone?"
    assert "We'll answer by e-mail." in text(response)
    assert 'id="ask-email-input"' in text(response)
    assert "Anyone?" in text_of(smtp.wait_for(OWNER, "New chat message on Shop"))


def test_away_message_with_email_is_stored_and_the_team_is_emailed(site, agent, visitor, smtp):
    response = visitor.send("Do you ship to Iceland?", email="Ann@Example.com", name="Ann")
    assert response.status_code == 200
    assert get(Message).body == "Do you ship to Iceland?"
    assert visitor.record().email == "ann@example.com"
    for member in (OWNER, AGENT_EMAIL):
        body = text_of(smtp.wait_for(member, "New chat message on Shop"))
        assert "Ann: Do you ship to Iceland?" in body
        assert f"/dashboard/conversations/{visitor.conversation().id}" in body


def away_notices(smtp):
    return [m for m in smtp.to(OWNER) if "New chat message" in m["Subject"]]


def test_second_away_message_within_ten_minutes_waits_for_the_batched_notice(
        app, site, visitor, smtp):
    visitor.send("First question", email="ann@example.com")
    assert len(away_notices(smtp)) == 1
    assert visitor.send("Second question").status_code == 200
    assert visitor.send("Third question").status_code == 200
    conv = visitor.conversation()
    assert conv.away_pending is True
    assert len(away_notices(smtp)) == 1

    # The scheduled notice, when it runs, carries what was written since the first one.
    from jobs.chat import send_away_notice

    with app.app_context():
        send_away_notice.call_local(conv.id)
    batched = smtp.wait_for(OWNER, "New chat message on Shop")
    assert len(away_notices(smtp)) == 2
    assert "Second question" in text_of(batched) and "Third question" in text_of(batched)
    assert "First question" not in text_of(batched)
    assert visitor.conversation().away_pending is False


def test_an_away_notice_whose_task_was_lost_is_sent_by_the_sweep(app, site, visitor, smtp):
    visitor.send("First question", email="ann@example.com")
    visitor.send("Second question")
    assert len(away_notices(smtp)) == 1
    conv = visitor.conversation()
    assert conv.away_pending is True
    # The web process died after marking the notice pending: its scheduled task never ran,
    # and the notice is now overdue.
    with connection():
        Conversation.update(away_notice_at=utcnow() - timedelta(minutes=16)).execute()
    from jobs.chat import sweep_away_notices

    with app.app_context():
        sweep_away_notices.call_local()
    batched = smtp.wait_for(OWNER, "New chat message on Shop")
    assert len(away_notices(smtp)) == 2
    assert "Second question" in text_of(batched)
    assert visitor.conversation().away_pending is False
    with app.app_context():
        sweep_away_notices.call_local()  # nothing pending: nothing more is sent
    assert len(away_notices(smtp)) == 2


def test_away_message_after_the_ten_minute_gap_notifies_at_once(site, visitor, smtp):
    visitor.send("First question", email="ann@example.com")
    with connection():
        Conversation.update(away_notice_at=utcnow() - timedelta(minutes=11)).execute()
    visitor.send("Back again")
    assert len(away_notices(smtp)) == 2
    assert visitor.conversation().away_pending is False


# --- attachments --------------------------------------------------------------------------------


ACCEPTED = [
    (png_bytes(), "screenshot.png", "image/png", "image/png", "screenshot.png"),
    (JPEG, "photo.jpeg", "image/jpeg", "image/jpeg", "photo.jpg"),
    (GIF, "anim.gif", "image/gif", "image/gif", "anim.gif"),
    (WEBP, "pic.webp", "image/webp", "image/webp", "pic.webp"),
    (PDF, "invoice.pdf", "application/pdf", "application/pdf", "invoice.pdf"),
    (TXT, "notes.txt", "text/plain", "text/plain", "notes.txt"),
    # The bytes decide, not the name or the browser's claim.
    (png_bytes(), "looks-like.pdf", "application/pdf", "image/png", "looks-like.png"),
]


def test_accepted_files_are_stored_with_the_type_their_bytes_show(site, online, visitor):
    for data, name, claimed, stored_type, stored_name in ACCEPTED:
        response = visitor.send("", file=(data, name, claimed))
        assert response.status_code == 200, (name, text(response))
        with connection():
            attachment = Attachment.select().order_by(Attachment.id.desc()).get()
        assert (attachment.content_type, attachment.filename) == (stored_type, stored_name)
        assert bytes(attachment.data) == data
        assert attachment.size == len(data)
        assert visitor.conversation().last_preview == f"📎 {stored_name}"
    assert count(Attachment) == len(ACCEPTED)


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
REFUSED = [
    (SVG, "logo.svg", "image/svg+xml"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "x.png", "image/png"),
    (b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "cat.png", "image/png"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00", "tool", "application/octet-stream"),
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00", "setup.exe", "application/x-msdownload"),
    (b"hello <script>fetch('/steal')</script>", "photo.png", "image/png"),
    (b"\xff\xfe\x00\x00broken utf-8 \xc3\x28", "notes.txt", "text/plain"),
]


def test_files_of_other_kinds_are_refused_and_nothing_is_stored(site, online, visitor):
    visitor.send("Before the file")
    before = chat_state()
    for data, name, claimed in REFUSED:
        response = visitor.send("Here is my file", file=(data, name, claimed))
        assert response.status_code == 422, name
        assert FILE_REFUSED in text(response), name
    assert chat_state() == before


def test_file_over_10_mb_is_refused_and_nothing_is_stored(site, online, visitor):
    before = chat_state()
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024 - 7)
    response = visitor.send("big one", file=(big, "big.png", "image/png"))
    assert response.status_code == 422
    assert "Files can be at most 10 MB." in text(response)
    assert chat_state() == before


def test_upload_far_over_the_limit_is_refused_before_reading(site, online, visitor):
    before = chat_state()
    huge = b"%PDF-" + b"0" * (12 * 1024 * 1024)
    response = visitor.send("huge", file=(huge, "huge.pdf", "application/pdf"))
    assert response.status_code == 413
    assert "What you sent is larger than we accept." in text(response)
    assert chat_state() == before


def test_empty_file_is_refused_with_a_message(site, online, visitor):
    before = chat_state()
    response = visitor.send("", file=(b"", "empty.txt", "text/plain"))
    assert response.status_code == 422
    assert "The file is empty." in text(response)
    assert chat_state() == before


def test_widget_file_download_is_an_attachment_that_no_browser_runs(site, online, visitor):
    visitor.send("", file=(PDF, "invoice.pdf", "application/pdf"))
    [link] = file_links(text(visitor.chat()))
    for url in (link, link + "?inline=1"):  # a PDF is never shown inline
        response = visitor.http.get(url)
        assert response.status_code == 200
        assert response.data == PDF
        assert response.headers["Content-Type"] == "application/pdf"
        assert response.headers["Content-Disposition"] == 'attachment; filename="invoice.pdf"'
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_images_may_be_shown_inline_in_the_widget(site, online, visitor):
    visitor.send("", file=(png_bytes(), "shot.png", "image/png"))
    html = text(visitor.chat())
    thumb = re.search(r'<img src="(/widget/files/[^"]+\?inline=1)"', html).group(1)
    response = visitor.http.get(thumb)
    assert response.headers["Content-Disposition"] == 'inline; filename="shot.png"'
    assert "sandbox" in response.headers["Content-Security-Policy"]


def test_forged_file_link_is_404(app, site, online, visitor):
    visitor.send("", file=(TXT, "notes.txt", "text/plain"))
    with app.app_context():
        forged = URLSafeTimedSerializer("wrong-key", salt="lumnar.attachment").dumps(1)
    http = app.test_client()
    for url in (f"/widget/files/{forged}", "/widget/files/1"):
        response = http.get(url)
        assert response.status_code == 404
        assert "There is nothing at this address." in text(response)
        assert response.data != TXT


def test_attachment_with_a_non_latin_name_downloads_through_the_asgi_server(app, site, online,
                                                                           visitor):
    """WSGI and ASGI servers send headers as Latin-1: the name must not break the download."""
    from app.asgi import build

    visitor.send("", file=(TXT, "șervețel 图片.txt", "text/plain"))
    [link] = file_links(text(visitor.chat()))

    async def download():
        transport = httpx.ASGITransport(app=build(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return await http.get(link)

    response = run_async(download())
    assert response.status_code == 200
    assert response.content == TXT
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "șervețel 图片.txt"


# --- plan and rate limits ------------------------------------------------------------------------


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_twenty_first_message_in_a_minute_is_refused_with_429(app, site, online, visitor):
    for i in range(20):
        assert visitor.send(f"message {i}").status_code == 200
    before = chat_state()
    response = visitor.send("one too many")
    assert response.status_code == 429
    assert "Too many attempts in a short time." in text(response)
    assert chat_state() == before


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_message_rate_limit_is_per_visitor_not_per_address(app, site, online, visitor):
    for i in range(20):
        assert visitor.send(f"message {i}").status_code == 200
    assert visitor.send("one too many").status_code == 429
    # Another visitor behind the same address (an office, a phone network) still gets through.
    neighbour = WidgetVisitor.arrive(app, site.site_key)
    assert neighbour.send("Hello from the same office").status_code == 200


# --- the visitor's own details, transcript and deletion --------------------------------------


def test_visitor_saves_their_details(site, online, visitor):
    visitor.send("Hi")
    response = visitor.profile(name="Ann Lee", email="ANN@example.com")
    assert response.status_code == 200
    assert "Saved." in text(response)
    record = visitor.record()
    assert (record.name, record.email) == ("Ann Lee", "ann@example.com")


def test_visitor_details_with_a_bad_email_are_refused(site, online, visitor):
    visitor.send("Hi")
    before = chat_state()
    response = visitor.profile(name="Ann", email="not-an-address")
    assert response.status_code == 422
    assert "Enter a valid e-mail address, like name@example.com." in text(response)
    assert chat_state() == before


def test_transcript_without_an_email_asks_for_one(site, online, visitor, smtp):
    visitor.send("Hi")
    before = chat_state()
    response = visitor.transcript()
    assert response.status_code == 422
    assert "Add your e-mail first, then ask again." in text(response)
    assert chat_state() == before
    assert [m for m in smtp.messages if "Your conversation" in m["Subject"]] == []


def test_transcript_before_any_conversation_says_there_is_nothing_to_send(site, visitor):
    before = chat_state()
    response = visitor.transcript()
    assert response.status_code == 409
    assert "There is no conversation to send yet." in text(response)
    assert chat_state() == before


def test_transcript_is_emailed_to_the_visitor_with_every_message(app, auth, site, online, visitor,
                                                                 smtp):
    visitor.send("Where is my parcel?", email="ann@example.com")
    conv = visitor.conversation()
    reply(auth, conv.id, {"body": "It left today."})
    response = visitor.transcript()
    assert response.status_code == 200
    assert "We sent the conversation to ann@example.com." in text(response)
    body = text_of(smtp.wait_for("ann@example.com", "Your conversation with Shop"))
    assert "Where is my parcel?" in body
    assert "It left today." in body


def test_visitor_deletes_their_conversation_and_its_files_at_once(app, site, online, visitor):
    visitor.send("My address is 1 Secret Lane", file=(png_bytes(), "id.png", "image/png"))
    [link] = file_links(text(visitor.chat()))
    conv = visitor.conversation()
    response = visitor.delete()
    assert response.status_code == 200
    assert "Your conversation was deleted" in text(response)
    assert count(Conversation) == 0
    assert count(Message) == 0
    assert count(Attachment) == 0
    assert visitor.http.get(link).status_code == 404
    with connection():
        events = [(e.kind, e.actor) for e in ChatEvent.select().where(
            ChatEvent.conversation_id == conv.id)]
    assert events == [(ChatEvent.DELETED, "visitor")]
    assert "Secret Lane" not in text(visitor.chat())

    from app.chat import render

    with connection():
        row = ChatEvent.get(ChatEvent.conversation_id == conv.id)
    [sse] = render.Renderer(app).events([(row, ("agent",))])
    assert "The visitor deleted this conversation." in sse["agent"].decode()


def test_after_deleting_the_visitor_can_start_a_new_conversation(site, online, visitor):
    visitor.send("First")
    visitor.delete()
    response = visitor.send("Starting over")
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#chat"
    assert count(Conversation) == 1
    assert [m.body for m in Message.select()] == ["Starting over"]



@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_eleventh_file_in_ten_minutes_is_refused_with_429(site, online, visitor):
    for i in range(10):
        assert visitor.send(f"file {i}", file=(TXT, f"n{i}.txt", "text/plain")).status_code == 200
    before = chat_state()
    response = visitor.send("one file too many", file=(TXT, "n.txt", "text/plain"))
    assert response.status_code == 429
    assert "Too many attempts in a short time." in text(response)
    assert chat_state() == before
    assert visitor.send("words without a file still go through").status_code == 200


def test_deleting_the_last_conversation_also_forgets_the_visitors_details(app, visitor, online):
    response = visitor.send("hello", email="me@example.com", name="Mia", page="https://shop.example.com/a")
    assert response.status_code == 200
    assert visitor.record().email == "me@example.com"
    assert visitor.delete().status_code == 200
    row = visitor.record()
    assert row is not None  # the widget keeps working for this browser
    assert (row.name, row.email, row.first_page_url) == ("", "", "")
