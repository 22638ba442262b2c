"""Alerts: each person's choices (sound, desktop notifications, muted sites) saved from the
settings page and carried by every dashboard page for the browser's script, which decides
from each streamed message's data attributes whether it alerts this person. The decision
itself runs in the browser (tests/e2e/test_alerts_browser.py)."""

import re

import pytest
from markupsafe import escape

from app.chat.models import Conversation
from app.dashboard.alerts import NOT_OURS, AlertSettings
from app.db import connection
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    WidgetVisitor,
    agent_fixture,
    make_site,
    online_fixture,
    reply,
    rival_fixture,
    site_fixture,
    text,
    workspace_id_of,
    ws_fixture,
)

URL = "/dashboard/settings/alerts"
SHOWN_REFUSAL = str(escape(NOT_OURS))  # as the page shows it (the apostrophe escaped)
PREFS = re.compile(r'<p id="alert-prefs"[^>]*>')


def prefs(html: str) -> dict:
    """The data attributes of the page's #alert-prefs element."""
    found = PREFS.search(html)
    assert found, html[:3000]
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', found.group(0)))


def stored(user_id: int):
    with connection():
        row = AlertSettings.get_or_none(AlertSettings.user == user_id)
        return None if row is None else (row.sound, row.notify, row.muted_sites)


def save(client, htmx=True, **fields):
    data = {"notify": "y", "sound": "y", **fields}
    return client.post_form(URL, {k: v for k, v in data.items() if v is not None}, htmx=htmx)


def test_alerts_start_on_with_nothing_muted(auth, user, site):
    """Someone who never chose hears and sees every alert: both boxes ticked in the settings,
    and the dashboard's pages tell the script so, with who is looking."""
    page = text(auth.get("/dashboard/settings"))
    assert 'id="alerts"' in page and "Turn on desktop notifications" in page
    assert re.search(r'<input checked id="notify"[^>]*type="checkbox"', page)
    assert re.search(r'<input checked id="sound"[^>]*type="checkbox"', page)
    assert re.search(rf'<input id="muted-0" name="muted" type="checkbox" value="{site.id}">', page)
    assert prefs(text(auth.get("/dashboard/inbox"))) == {
        "user": str(user.id), "sound": "1", "notify": "1", "muted": ""}


def test_saved_choices_are_what_every_dashboard_page_then_carries(auth, user, ws, site):
    """Saving answers with the section and the page's own copy of the choices (out of band),
    so the open page alerts as chosen without reloading; later pages carry them too."""
    other = make_site(auth.application, ws, name="Outlet", origins="https://outlet.example.com")
    answer = save(auth, sound=None, muted=[str(other.id)])
    html = text(answer)
    assert answer.status_code == 200
    assert "Alerts saved." in html and 'hx-swap-oob="true"' in html
    assert prefs(html) == {"user": str(user.id), "sound": "0", "notify": "1", "muted": str(other.id)}
    assert stored(user.id) == (False, True, str(other.id))
    assert prefs(text(auth.get("/dashboard/inbox")))["muted"] == str(other.id)
    # Unticking them all: both off, nothing muted.
    assert save(auth, notify=None, sound=None).status_code == 200
    assert stored(user.id) == (False, False, "")


def test_a_site_of_another_workspace_is_refused_and_nothing_changes(auth, user, site, rival):
    """A muted site id that is not one of this workspace's (another customer's, a word, markup)
    is refused beside the list with a 422, and the stored choices stay as they were."""
    assert save(auth, muted=[str(site.id)]).status_code == 200
    before = stored(user.id)
    for wrong in (str(rival["site"].id), "abc", "<script>alert(1)</script>", "9" * 30, "²"):
        answer = save(auth, sound=None, muted=[str(site.id), wrong])
        html = text(answer)
        assert answer.status_code == 422, wrong
        assert SHOWN_REFUSAL in html and 'id="muted-error"' in html
        assert "<script>alert(1)" not in html
        assert stored(user.id) == before


def test_a_site_named_with_markup_is_shown_as_text(auth, ws):
    make_site(auth.application, ws, name='<img src=x onerror="alert(1)">')
    page = text(auth.get("/dashboard/settings"))
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=" in page


def test_without_the_form_token_nothing_is_saved(auth, user, site):
    answer = auth.post(URL, data={"notify": "y", "muted": str(site.id)},
                       headers={"HX-Request": "true"})
    assert answer.status_code == 400
    assert stored(user.id) is None


def test_without_javascript_the_form_still_works(auth, user, site, rival):
    """A plain post goes back to the settings with a message; one needing correcting shows
    the section on a page of its own, the message beside the list."""
    answer = save(auth, htmx=False, notify=None, muted=[str(site.id)])
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/dashboard/settings#alerts")
    assert "Alerts saved." in text(auth.get("/dashboard/settings"))
    assert stored(user.id) == (True, False, str(site.id))
    refused = save(auth, htmx=False, muted=[str(rival["site"].id)])
    assert refused.status_code == 422
    assert "<!doctype html>" in text(refused) and SHOWN_REFUSAL in text(refused)
    assert stored(user.id) == (True, False, str(site.id))


def test_sites_muted_in_another_workspace_of_mine_are_kept(app, auth, user, ws, site, agent):
    """A person in two workspaces mutes sites in each: saving in one leaves the other's alone."""
    agents = agent["client"]
    agent_id = agent["user"].id
    agent_ws = workspace_id_of(agent["user"].email)
    own = make_site(app, agent_ws, name="Own shop", origins="https://own.example.com")
    assert save(agents, muted=[str(site.id)]).status_code == 200  # in the owner's workspace
    assert agents.post_form("/dashboard/workspace", {"workspace_id": agent_ws}).status_code == 303
    page = text(agents.get("/dashboard/settings"))
    assert f'value="{own.id}"' in page and f'value="{site.id}"' not in page
    assert save(agents, muted=[str(own.id)]).status_code == 200
    assert stored(agent_id)[2] == " ".join(sorted((str(site.id), str(own.id)), key=int))
    assert save(agents, muted=[]).status_code == 200
    assert stored(agent_id)[2] == str(site.id)


def test_messages_carry_what_the_browser_decides_alerts_by(app, auth, user, site, online):
    """Each message says who sent it (and which agent), in which conversation of which site,
    and whether it opened the conversation; the inbox row says who it is assigned to."""
    guest = WidgetVisitor.arrive(app, site.site_key)
    assert guest.send("Hello, is the teapot in stock?").status_code == 200
    assert guest.send("The blue one.").status_code == 200
    conversation = guest.conversation()
    assert reply(auth, conversation.id, {"body": "Yes, it is."}, htmx=True).status_code == 200
    page = text(auth.get(f"/dashboard/conversations/{conversation.id}"))
    items = re.findall(r'<li id="msg-\d+"[^>]*>', page)
    assert len(items) == 3
    common = f'data-conversation="{conversation.id}" data-site="{site.id}"'
    assert 'data-sender="visitor" data-author=""' in items[0] and common in items[0]
    assert "data-opens" in items[0]
    assert "data-opens" not in items[1] and 'data-sender="visitor"' in items[1]
    assert f'data-sender="agent" data-author="{user.id}"' in items[2] and "data-opens" not in items[2]
    link = f'href="/dashboard/conversations/{conversation.id}" data-assignee='
    assert link + '""' in text(auth.get("/dashboard/inbox"))
    with connection():
        Conversation.update(assignee=user.id).where(Conversation.id == conversation.id).execute()
    assert link + f'"{user.id}"' in text(auth.get("/dashboard/inbox"))


@pytest.mark.parametrize("path", [URL, "/dashboard/settings"])
def test_signed_out_people_are_sent_to_log_in(client, path):
    answer = client.get(path)
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
