"""Saved replies at a thousand: saving one costs the same few statements and renders one row
however many the workspace keeps (it used to read and render them all: 485 saves took ~110 s);
no page lists them all; the reply form's picker finds a few as the agent types."""

import logging
import re

from app.chat.models import SavedReply
from app.db import connection
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    chat_state,
    conversation_fixture,
    count,
    online_fixture,
    reply,
    rival_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)

MANY = 1000
HTMX = {"HX-Request": "true"}
ROW = re.compile(r'<li id="saved-(\d+)">')


def keep_many(ws: int, n: int = MANY, start: int = 0) -> None:
    """`n` saved replies in the workspace, written directly (one statement)."""
    with connection():
        SavedReply.insert_many([
            {"workspace": ws, "shortcut": f"reply-{i:04d}", "body": f"Saved answer number {i}. " * 4}
            for i in range(start, start + n)]).execute()


def statements(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "peewee"]


def save(auth, caplog, token, shortcut, htmx=True):
    """Post the "Add a saved reply" form; (answer, the SQL statements it ran)."""
    caplog.clear()
    response = auth.raw.post("/dashboard/saved-replies", headers=HTMX if htmx else {}, data={
        "csrf_token": token, "shortcut": shortcut, "body": f"The text of /{shortcut}."})
    return response, statements(caplog)


def test_saving_costs_the_same_statements_and_one_row_with_a_thousand_saved(auth, ws, caplog):
    token = auth.csrf()
    save(auth, caplog, token, "warm-up")  # the first request of a thread prepares statements
    caplog.set_level(logging.DEBUG, logger="peewee")
    answer, few = save(auth, caplog, token, "second")
    assert answer.status_code == 200, text(answer)
    keep_many(ws)
    answer, many = save(auth, caplog, token, "after-a-thousand")
    assert answer.status_code == 200, text(answer)
    assert len(many) == len(few), "\n".join(many)
    # Nothing of the list is read: the unique index says whether the shortcut is taken.
    assert not [s for s in many if s.startswith("('SELECT") and 'FROM "saved_reply"' in s], many
    # The answer: a fresh form and the one new row, put at the top of the list on the page.
    html = text(answer)
    assert [int(i) for i in ROW.findall(html)] == [get_id("after-a-thousand")]
    assert 'hx-swap-oob="afterbegin:#saved-list"' in html
    assert "Saved /after-a-thousand." in html
    assert count(SavedReply) == MANY + 3


def get_id(shortcut: str) -> int:
    with connection():
        return SavedReply.get(SavedReply.shortcut == shortcut).id


def test_a_taken_shortcut_is_refused_without_reading_the_list(auth, ws, caplog):
    keep_many(ws)
    token = auth.csrf()
    before = chat_state()
    caplog.set_level(logging.DEBUG, logger="peewee")
    answer, ran = save(auth, caplog, token, "reply-0500")
    assert answer.status_code == 422
    assert "A saved reply with this shortcut exists already." in text(answer)
    assert ROW.findall(text(answer)) == []  # the form alone, no list
    assert not [s for s in ran if s.startswith("('SELECT") and 'FROM "saved_reply"' in s], ran
    assert chat_state() == before
    # Without JavaScript the page comes back with the refusal and one page of the list.
    answer, _ = save(auth, caplog, token, "reply-0500", htmx=False)
    assert answer.status_code == 422
    assert len(ROW.findall(text(answer))) == 50


def test_the_saved_replies_page_shows_a_page_at_a_time_and_finds_them(auth, ws):
    keep_many(ws)
    first = text(auth.get("/dashboard/saved-replies"))
    assert len(ROW.findall(first)) == 50
    assert "/reply-0000" in first and "/reply-0049" in first and "/reply-0050" not in first
    assert 'href="/dashboard/saved-replies?page=2">Next' in first
    last = text(auth.get("/dashboard/saved-replies?page=20"))
    assert len(ROW.findall(last)) == 50 and ">Next<" not in last and ">Previous<" in last
    found = text(auth.get("/dashboard/saved-replies?q=number 77."))
    assert ROW.findall(found) == [str(get_id("reply-0077"))]
    # Search words are plain text: % and _ match only themselves.
    assert ROW.findall(text(auth.get("/dashboard/saved-replies?q=%25"))) == []
    none = text(auth.get("/dashboard/saved-replies?q=teapot"))
    assert "No saved reply matches “teapot”." in none


def test_the_picker_offers_a_few_matches_shortcuts_first(auth, ws):
    keep_many(ws)
    keep = [("ship", "We ship to every country in the EU."), ("hours", "Open 9 to 5; we ship daily.")]
    with connection():
        for shortcut, body in keep:
            SavedReply.create(workspace=ws, shortcut=shortcut, body=body)

    def picked(q):
        html = text(auth.get(f"/dashboard/saved-replies/find?q={q}", headers=HTMX))
        return re.findall(r'data-shortcut="([^"]+)"', html), html

    shortcuts, html = picked("")
    assert len(shortcuts) == 8  # never the whole list
    assert "The first 8: type more to narrow them down." in html
    shortcuts, html = picked("ship")
    assert shortcuts == ["ship", "hours"]  # the shortcut that starts with it first
    assert 'data-insert="We ship to every country in the EU."' in html
    assert "2 saved replies for “ship”: press ↓ to choose." in html  # told to screen readers
    shortcuts, html = picked("nothing-like-it")
    assert shortcuts == [] and "No saved reply matches “nothing-like-it”." in html
    # Without htmx, the saved replies page finds them.
    response = auth.get("/dashboard/saved-replies/find?q=ship")
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard/saved-replies?q=ship"


def test_a_shortcut_typed_in_a_reply_is_looked_up_alone(auth, ws, rival):
    keep_many(ws)
    response = auth.get("/dashboard/saved-replies/shortcut?name=REPLY-0003")
    assert response.status_code == 200
    assert response.get_json() == {"shortcut": "reply-0003", "body": "Saved answer number 3. " * 4}
    assert auth.get("/dashboard/saved-replies/shortcut?name=nope").status_code == 404
    # Another workspace's saved replies are not found.
    rival["client"].post_form("/dashboard/saved-replies", {"shortcut": "secret", "body": "Theirs"})
    assert auth.get("/dashboard/saved-replies/shortcut?name=secret").status_code == 404
    theirs = text(rival["client"].get("/dashboard/saved-replies/find?q=reply", headers=HTMX))
    assert "reply-0003" not in theirs


def test_a_conversation_and_a_reply_read_no_saved_replies(auth, ws, conversation, caplog):
    keep_many(ws)
    page = text(auth.get(f"/dashboard/conversations/{conversation.id}"))
    assert "Saved answer number" not in page
    caplog.set_level(logging.DEBUG, logger="peewee")
    caplog.clear()
    answer = reply(auth, conversation.id, {"body": "Thanks for asking!"}, htmx=True)
    assert answer.status_code == 200, answer.text
    assert "Saved answer number" not in answer.text
    assert not [s for s in statements(caplog) if 'FROM "saved_reply"' in s]


def test_deleting_one_with_htmx_removes_its_row(auth, ws):
    keep_many(ws, 3)
    target = get_id("reply-0001")
    response = auth.post_form(f"/dashboard/saved-replies/{target}/delete", htmx=True)
    assert response.status_code == 200 and text(response) == ""
    assert count(SavedReply) == 2
    page = text(auth.get("/dashboard/saved-replies"))
    assert f'hx-target="#saved-{get_id("reply-0002")}"' in page  # each row swaps only itself
