"""The inbox in two panes: one page holds the conversation list and the open conversation;
htmx asks for one pane at a time (the same template files) and is told the address to show;
the stream's pieces find their places in both panes; an empty list says what to do next; the
page showing a conversation can mark it read and learns whether that changed anything."""

import re
from html.parser import HTMLParser

from app.chat import render
from app.chat.live import AGENT
from app.chat.models import ChatEvent, Conversation
from app.db import connection
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    WidgetVisitor,
    get,
    make_site,
    online_fixture,
    rival_fixture,
    site_fixture,
    text,
    ws_fixture,
)
from tests.test_chat_dashboard import start_conversations

PANE = {"HX-Request": "true", "HX-Boosted": "true", "HX-Target": "conversation-pane"}
LIST = {"HX-Request": "true", "HX-Boosted": "true", "HX-Target": "inbox"}


def rows(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li id="conv-(\d+)" class="conv-row', html)]


def ids_in(html: str) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', html))


def test_a_conversations_page_shows_the_list_beside_it(app, auth, site, online):
    first, second = start_conversations(app, site, ["Where is my parcel?", "Do you sell gift cards?"])
    html = text(auth.get(f"/dashboard/conversations/{first}"))
    assert "<!doctype html>" in html
    assert rows(html) == [second, first]  # the list pane
    assert f'<section id="conversation-{first}" class="conversation"' in html  # the open one
    assert 'id="conversation-pane"' in html and "pane-empty" not in html
    label = get(Conversation, Conversation.id == first).visitor.label
    assert f"<title>(1) {label} · Lumnar</title>" in html  # its visitor names the page
    inbox = text(auth.get("/dashboard/inbox"))
    assert rows(inbox) == [second, first]
    assert 'class="pane-empty"' in inbox and "No conversation open" in inbox
    # The list's filter and search words are part of the address, and kept.
    assert auth.post_form(f"/dashboard/conversations/{first}/status",
                          {"status": "resolved"}).status_code == 303
    resolved = text(auth.get(f"/dashboard/conversations/{first}?filter=resolved"))
    assert rows(resolved) == [first]
    assert 'href="/dashboard/inbox?filter=resolved">All conversations' in resolved
    found = text(auth.get(f"/dashboard/conversations/{first}?q=parcel"))
    assert f'href="/dashboard/conversations/{first}#msg-' in found


def test_htmx_gets_one_pane_and_the_address_to_show(app, auth, site, online):
    first, second = start_conversations(app, site, ["Where is my parcel?", "Do you sell gift cards?"])
    response = auth.get(f"/dashboard/conversations/{first}?filter=all", headers=PANE)
    html = text(response)
    assert response.status_code == 200
    assert "<html" not in html and "<nav" not in html  # the pane alone
    assert f'<section id="conversation-{first}" class="conversation"' in html
    assert response.headers["HX-Push-Url"] == f"/dashboard/conversations/{first}?filter=all"
    # Its title, and the list's row and unread badge as opening it left them.
    label = get(Conversation, Conversation.id == first).visitor.label
    assert f"<title>(1) {label} · Lumnar</title>" in html
    assert f'<li id="conv-{first}" class="conv-row" hx-swap-oob="true">' in html
    assert 'data-unread="1"' in html and 'id="unread-count"' in html
    assert get(Conversation, Conversation.id == first).unread_count == 0
    # The list pane alone, its address keeping the open conversation.
    response = auth.get(f"/dashboard/inbox?filter=all&open={first}", headers=LIST)
    assert "<html" not in text(response) and rows(text(response)) == [second, first]
    assert response.headers["HX-Push-Url"] == f"/dashboard/conversations/{first}?filter=all"
    response = auth.get("/dashboard/inbox?q=parcel", headers=LIST)
    assert response.headers["HX-Push-Url"] == "/dashboard/inbox?q=parcel"
    # Back and forward: htmx asks again for the whole page.
    restore = {**PANE, "HX-History-Restore-Request": "true"}
    html = text(auth.get(f"/dashboard/conversations/{first}", headers=restore))
    assert "<!doctype html>" in html and rows(html) == [second, first]


def test_another_workspaces_conversation_is_never_kept_open(auth, rival):
    theirs = rival["conversation"].id
    response = auth.get(f"/dashboard/inbox?open={theirs}", headers=LIST)
    assert response.status_code == 200
    assert response.headers["HX-Push-Url"] == "/dashboard/inbox"
    assert auth.get(f"/dashboard/conversations/{theirs}", headers=PANE).status_code == 404


def test_every_piece_of_a_live_event_finds_its_place_in_the_two_panes(app, auth, site, online):
    first, _ = start_conversations(app, site, ["Where is my parcel?", "Do you sell gift cards?"])
    page = ids_in(text(auth.get(f"/dashboard/conversations/{first}")))
    auth.post_form(f"/dashboard/conversations/{first}/status", {"status": "resolved"})
    auth.post_form(f"/dashboard/conversations/{first}/visitor", {"name": "Ann", "email": ""})
    with app.app_context(), connection():
        events = list(ChatEvent.select().where(ChatEvent.conversation_id == first)
                      .order_by(ChatEvent.seq))
        renderer = render.Renderer(app)
        kinds = set()
        for event in events:
            html = render_html(renderer, event)
            if html is None:
                continue
            kinds.add(event.kind)
            for own_id, spec in oob_pieces(html):
                if spec == "delete":
                    continue  # the row it deletes is put back at the top by the next piece
                target = spec.split(":", 1)[1].lstrip("#") if ":" in spec else own_id
                assert target in page, (event.kind, spec, own_id)
    assert {"message", "read", "status", "visitor"} <= kinds


class OobPieces(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "hx-swap-oob" in attrs:
            self.found.append((attrs.get("id"), attrs["hx-swap-oob"]))


def oob_pieces(html: str) -> list[tuple[str | None, str]]:
    parser = OobPieces()
    parser.feed(html)
    return parser.found


def render_html(renderer, event) -> str | None:
    sse = renderer.event(event, [AGENT])[AGENT]
    if sse is None:
        return None
    return "\n".join(line[6:] for line in sse.decode().split("\r\n") if line.startswith("data: "))


def test_an_empty_inbox_says_what_to_do_next(app, auth, ws):
    html = text(auth.get("/dashboard/inbox"))
    assert "No conversations yet: add the chat to your website first." in html
    assert '<a href="/dashboard/sites">Sites page</a>' in html
    site = make_site(app, ws, name="Corner shop")
    html = text(auth.get("/dashboard/inbox"))
    assert "No conversations yet: add the widget to your site." in html
    assert f'<a href="/dashboard/sites/{site.id}">Corner shop' in html
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("Hello?", email="ann@example.com").status_code == 200
    conv = guest.conversation()
    assert "add the widget" not in text(auth.get("/dashboard/inbox"))
    for filter_, words in [("mine", "Nothing assigned to you."),
                           ("resolved", "No resolved conversations yet.")]:
        assert words in text(auth.get(f"/dashboard/inbox?filter={filter_}")), filter_
    auth.post_form(f"/dashboard/conversations/{conv.id}/status", {"status": "resolved"})
    assert "All caught up: no open conversations." in text(auth.get("/dashboard/inbox"))


def test_the_page_learns_whether_marking_read_changed_anything(app, auth, site, online):
    [first] = start_conversations(app, site, ["Where is my parcel?"])
    url = f"/dashboard/conversations/{first}/read"
    response = auth.post_form(url, htmx=True)
    assert response.status_code == 204 and response.headers["Lumnar-Read"] == "changed"
    assert get(Conversation, Conversation.id == first).unread_count == 0
    response = auth.post_form(url, htmx=True)
    assert response.headers["Lumnar-Read"] == "unchanged"
    assert auth.raw.post(url, headers={"HX-Request": "true"}).status_code == 400  # no CSRF token
