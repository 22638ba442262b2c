"""Labels and round-robin assignment: owners keep the workspace's labels (names unique without
regard to case, markup kept as text, colours #rrggbb with black or white text, whichever
reads better); any member puts them on conversations, which every open page is told through
the chat's event stream; the inbox filters by one; and new conversations go in turn to the
members who are online and below their limit, also when two start at the same moment."""

import re
import threading
from datetime import timedelta

import pytest

from app.accounts.models import Membership
from app.chat import labels, live, render, service
from app.chat.labels import AssignmentRule, ConversationLabel, Label, MemberLimit
from app.chat.models import ChatEvent, Conversation, Presence
from app.db import connection, utcnow
from app.widget.colours import contrast
from app.widget.models import Site
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    WidgetVisitor,
    agent_fixture,
    conversation_fixture,
    online_fixture,
    rival_fixture,
    set_agent_online,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import db_state, make_user
from tests.test_chat_dashboard import start_conversations


def made_label(app, ws, name="VIP", colour="#4338ca") -> Label:
    with app.test_request_context(), connection():
        return labels.create(ws, name, colour)


def label_rows(ws) -> list[tuple[str, str]]:
    with connection():
        return [(label.name, label.colour) for label in labels.workspace_labels(ws)]


def labels_on(conversation_id) -> list[str]:
    with connection():
        return sorted(chip.name for chip in labels.chips_for([conversation_id]).get(conversation_id, []))


def put_on(client, conversation_id, label_id, htmx=True):
    return client.post_form(f"/dashboard/conversations/{conversation_id}/labels",
                            {"label": str(label_id)}, htmx=htmx)


def take_off(client, conversation_id, label_id, htmx=True):
    return client.post_form(f"/dashboard/conversations/{conversation_id}/labels/{label_id}/delete",
                            htmx=htmx)


def label_events(conversation_id) -> list:
    with connection():
        return list(ChatEvent.select().where((ChatEvent.conversation_id == conversation_id)
                                             & (ChatEvent.kind == labels.EVENT))
                    .order_by(ChatEvent.seq))


def agents_html(app, event) -> str:
    [sse] = render.Renderer(app).events([(event, (live.AGENT,))])
    data = sse[live.AGENT].decode()
    return "\n".join(line[6:] for line in data.split("\r\n") if line.startswith("data: "))


def rows(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li id="conv-(\d+)" class="conv-row', html)]


# --- the workspace's labels ------------------------------------------------------------------


def test_an_owner_creates_renames_recolours_and_deletes_a_label(app, auth, ws):
    """The Labels page is where the workspace's labels are kept, each change answered with
    the page's list as it now stands."""
    response = auth.post_form("/dashboard/labels", {"name": "  Billing  question ",
                                                    "colour": "#FFD700"}, htmx=True)
    assert response.status_code == 200, text(response)
    assert "Label “Billing question” created." in text(response)
    assert label_rows(ws) == [("Billing question", "#ffd700")]
    with connection():
        label = Label.get(Label.workspace == ws)
    response = auth.post_form(f"/dashboard/labels/{label.id}", {
        f"label-{label.id}-name": "Billing", f"label-{label.id}-colour": "#1d4ed8"}, htmx=True)
    assert response.status_code == 200, text(response)
    assert label_rows(ws) == [("Billing", "#1d4ed8")]
    page = text(auth.get("/dashboard/labels"))
    # Dark blue: white text on it; the chip's colours travel as data for the page's script.
    assert 'data-label-colour="#1d4ed8" data-label-ink="#ffffff">Billing</span>' in page
    assert f'for="label-{label.id}-name">Name of Billing</label>' in page
    response = auth.post_form(f"/dashboard/labels/{label.id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/labels"
    assert label_rows(ws) == []


def test_the_chips_text_is_black_or_white_whichever_passes_wcag_aa():
    """Any #rrggbb may be chosen: the better of black and white text reaches 4.5:1 on every
    colour (checked over a grid of the whole colour cube, the darkest and lightest greys and
    the colour where both are worst)."""
    assert labels.ink("#ffd700") == "#000000" and labels.ink("#1d4ed8") == "#ffffff"
    steps = range(0, 256, 17)
    colours = [f"#{r:02x}{g:02x}{b:02x}" for r in steps for g in steps for b in steps]
    colours += ["#000000", "#ffffff", "#767676", "#777777", "#5d60ff"]
    worst = min(contrast(labels.ink(c), c) for c in colours)
    assert worst >= 4.5


def test_markup_in_a_label_name_stays_text_everywhere_it_shows(app, auth, ws, site, online):
    markup = '<img src=x onerror=alert(1)>'
    assert auth.post_form("/dashboard/labels", {"name": markup, "colour": "#22c55e"}).status_code == 303
    assert label_rows(ws) == [(markup, "#22c55e")]
    [conversation_id] = start_conversations(app, site, ["Hello"])
    with connection():
        label = Label.get(Label.workspace == ws)
    assert put_on(auth, conversation_id, label.id).status_code == 200
    for url in ("/dashboard/labels", "/dashboard/inbox", f"/dashboard/conversations/{conversation_id}"):
        page = text(auth.get(url))
        assert "<img src=x" not in page, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in page, url
    [event] = label_events(conversation_id)
    html = agents_html(app, event)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("name, colour, message", [
    ("", "#4338ca", "Give the label a name."),
    ("   ", "#4338ca", "Give the label a name."),
    ("x" * 41, "#4338ca", "Keep the name to 40 characters or fewer (this one has 41)."),
    ("Bell\x07", "#4338ca", "Use letters, digits, spaces and punctuation only."),
    ("\u202egnitset", "#4338ca", "Use letters, digits, spaces and punctuation only."),
    ("Red", "red", "Use a colour like #4338ca"),
    ("Red", "#f00", "Use a colour like #4338ca"),
    ("Red", "#gggggg", "Use a colour like #4338ca"),
    ("Red", "#4338ca; background: url(x)", "Use a colour like #4338ca"),
    ("Red", "", "Use a colour like #4338ca"),
    ("vip", "#4338ca", "A label named “vip” exists already"),
    ("ＶＩＰ", "#4338ca", "A label named “ＶＩＰ” exists already"),
])
def test_a_bad_label_is_refused_beside_its_field_and_changes_nothing(app, auth, ws, name, colour,
                                                                      message):
    made_label(app, ws, "VIP")
    before = db_state(Label)
    response = auth.post_form("/dashboard/labels", {"name": name, "colour": colour}, htmx=True)
    assert response.status_code == 422
    html = text(response)
    assert message in html
    assert 'aria-invalid="true"' in html
    assert db_state(Label) == before


def test_renaming_a_label_to_anothers_name_is_refused_and_changes_nothing(app, auth, ws):
    made_label(app, ws, "VIP")
    other = made_label(app, ws, "Refund", "#dc2626")
    before = db_state(Label)
    response = auth.post_form(f"/dashboard/labels/{other.id}", {
        f"label-{other.id}-name": "Vip", f"label-{other.id}-colour": "#dc2626"}, htmx=True)
    assert response.status_code == 422
    assert "A label named “Vip” exists already" in text(response)
    assert db_state(Label) == before
    # Its own name in another case is no clash.
    response = auth.post_form(f"/dashboard/labels/{other.id}", {
        f"label-{other.id}-name": "REFUND", f"label-{other.id}-colour": "#dc2626"}, htmx=True)
    assert response.status_code == 200
    assert label_rows(ws) == [("REFUND", "#dc2626"), ("VIP", "#4338ca")]


def test_another_workspaces_label_or_conversation_is_a_404(app, auth, ws, conversation, rival):
    """Ids of other workspaces reveal nothing and change nothing, whichever way they are
    combined."""
    theirs = made_label(app, rival["ws"], "Theirs")
    mine = made_label(app, ws, "Mine")
    before = db_state(Label, ConversationLabel)
    rival_conversation = rival["conversation"].id
    assert auth.post_form(f"/dashboard/labels/{theirs.id}", {
        f"label-{theirs.id}-name": "Taken", f"label-{theirs.id}-colour": "#000000"}).status_code == 404
    assert auth.post_form(f"/dashboard/labels/{theirs.id}/delete").status_code == 404
    assert put_on(auth, conversation.id, theirs.id).status_code == 404
    assert take_off(auth, conversation.id, theirs.id).status_code == 404
    assert put_on(auth, rival_conversation, mine.id).status_code == 404
    assert put_on(auth, rival_conversation, theirs.id).status_code == 404
    assert put_on(auth, conversation.id, "99999999999999999999").status_code == 404
    assert put_on(auth, conversation.id, "abc").status_code == 404
    assert auth.get(f"/dashboard/inbox?label={theirs.id}").status_code == 404
    assert auth.get("/dashboard/inbox?label=abc").status_code == 404
    assert db_state(Label, ConversationLabel) == before
    # Another workspace's member cannot be given a limit here either.
    with connection():
        rival_member = Membership.get(Membership.workspace == rival["ws"])
    assert auth.post_form(f"/dashboard/assignment/members/{rival_member.id}",
                          {f"member-{rival_member.id}-max_open": "3"}).status_code == 404


def test_a_label_to_add_must_be_chosen(auth, conversation):
    response = auth.post_form(f"/dashboard/conversations/{conversation.id}/labels", {"label": ""},
                              htmx=True)
    assert response.status_code == 422
    assert "Choose a label to add." in text(response)


def test_an_agent_cannot_manage_labels_but_puts_them_on_and_takes_them_off(app, ws, agent,
                                                                           conversation):
    label = made_label(app, ws, "VIP")
    client = agent["client"]
    before = db_state(Label, AssignmentRule, MemberLimit)
    assert client.post_form("/dashboard/labels", {"name": "Mine", "colour": "#000000"}).status_code == 403
    assert client.post_form(f"/dashboard/labels/{label.id}", {
        f"label-{label.id}-name": "Renamed", f"label-{label.id}-colour": "#000000"}).status_code == 403
    assert client.post_form(f"/dashboard/labels/{label.id}/delete").status_code == 403
    assert client.post_form("/dashboard/assignment", {"round-robin-enabled": "y"}).status_code == 403
    with connection():
        own = Membership.get(Membership.user == agent["user"].id)
    assert client.post_form(f"/dashboard/assignment/members/{own.id}",
                            {f"member-{own.id}-max_open": "1"}).status_code == 403
    assert db_state(Label, AssignmentRule, MemberLimit) == before
    # The page shows them the labels, without the owners' forms.
    page = text(client.get("/dashboard/labels"))
    assert ">VIP</span>" in page and "Create label" not in page and "Delete VIP" not in page
    # Putting a label on and taking it off is every member's.
    response = put_on(client, conversation.id, label.id)
    assert response.status_code == 200
    assert f'id="conv-labels-{conversation.id}"' in text(response) and ">VIP</span>" in text(response)
    assert labels_on(conversation.id) == ["VIP"]
    response = take_off(client, conversation.id, label.id, htmx=False)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/dashboard/conversations/{conversation.id}"
    assert labels_on(conversation.id) == []


def test_label_changes_without_the_csrf_token_are_refused(app, auth, ws, conversation):
    label = made_label(app, ws, "VIP")
    before = db_state(Label, ConversationLabel, AssignmentRule)
    for url, data in [("/dashboard/labels", {"name": "New", "colour": "#000000"}),
                      (f"/dashboard/labels/{label.id}/delete", {}),
                      ("/dashboard/assignment", {"round-robin-enabled": "y"}),
                      (f"/dashboard/conversations/{conversation.id}/labels", {"label": label.id})]:
        assert auth.post(url, data=data).status_code == 400, url
    assert db_state(Label, ConversationLabel, AssignmentRule) == before


# --- labels on conversations, live -----------------------------------------------------------


def test_putting_a_label_on_tells_every_agents_page(app, auth, ws, conversation):
    """One "label" event per change: rendered for agents, it carries the conversation's
    labels, its inbox row with the chip, and the row at the top of the lists filtered by that
    label; taken off, the row leaves those lists. Visitors are told nothing."""
    vip = made_label(app, ws, "VIP", "#ffd700")
    assert put_on(auth, conversation.id, vip.id).status_code == 200
    [added] = label_events(conversation.id)
    assert added.ref_id == vip.id
    html = agents_html(app, added)
    assert f'<section id="conv-labels-{conversation.id}" class="card conv-labels"' in html
    assert f'<li id="conv-{conversation.id}" class="conv-row' in html
    assert 'data-label-colour="#ffd700" data-label-ink="#000000">VIP</span>' in html
    assert f'hx-swap-oob="afterbegin:#inbox-rows-label-{vip.id}"' in html
    assert f'hx-swap-oob="afterbegin:#inbox-rows-all-label-{vip.id}"' in html
    [sse] = render.Renderer(app).events([(added, (live.VISITOR,))])
    assert sse[live.VISITOR] is None
    assert take_off(auth, conversation.id, vip.id).status_code == 200
    removed = label_events(conversation.id)[-1]
    html = agents_html(app, removed)
    assert f"""hx-swap-oob="delete:ul[data-label='{vip.id}'] > #conv-{conversation.id}\"""" in html
    assert "afterbegin:#inbox-rows-label" not in html and ">VIP</span>" not in html


def changed_events(ws) -> list:
    with connection():
        return list(ChatEvent.select().where((ChatEvent.workspace_id == ws)
                                             & (ChatEvent.kind == labels.CHANGED))
                    .order_by(ChatEvent.seq))


def test_renaming_recolouring_or_deleting_a_label_tells_every_agents_page(app, auth, ws,
                                                                        conversation):
    """One workspace event per change (on no conversation): rendered for agents, every chip of
    the label is repainted with its new name and colours, and the lists that offer it say the
    new name; deleted, its chips, its place in a conversation's labels and its options go.
    Visitors are told nothing."""
    vip = made_label(app, ws, "VIP", "#ffd700")
    assert put_on(auth, conversation.id, vip.id).status_code == 200
    page = text(auth.get(f"/dashboard/conversations/{conversation.id}"))
    assert f'data-label-id="{vip.id}"' in page and f'data-label-item="{vip.id}"' in page
    assert f'data-label-option="{vip.id}"' in text(auth.get("/dashboard/inbox"))

    response = auth.post_form(f"/dashboard/labels/{vip.id}", {
        f"label-{vip.id}-name": "Gold <b>client</b>", f"label-{vip.id}-colour": "#1d4ed8"}, htmx=True)
    assert response.status_code == 200, text(response)
    [renamed] = changed_events(ws)
    assert (renamed.conversation_id, renamed.ref_id) == (0, vip.id)
    html = agents_html(app, renamed)
    assert (f'<span class="label-chip" data-label-id="{vip.id}" data-label-colour="#1d4ed8" '
            f'data-label-ink="#ffffff" hx-swap-oob="outerHTML:[data-label-id=\'{vip.id}\']">'
            "Gold &lt;b&gt;client&lt;/b&gt;</span>") in html
    assert (f'<option hx-swap-oob="innerHTML:[data-label-option=\'{vip.id}\']">'
            "Gold &lt;b&gt;client&lt;/b&gt;</option>") in html
    [sse] = render.Renderer(app).events([(renamed, (live.VISITOR,))])
    assert sse[live.VISITOR] is None

    response = auth.post_form(f"/dashboard/labels/{vip.id}/delete")
    assert response.status_code == 303
    deleted = changed_events(ws)[-1]
    html = agents_html(app, deleted)
    for selector in (f"[data-label-item='{vip.id}']", f"[data-label-id='{vip.id}']",
                     f"[data-label-option='{vip.id}']"):
        assert f'hx-swap-oob="delete:{selector}"' in html
    assert "Gold" not in html


def test_putting_a_label_on_twice_keeps_one_row_and_tells_once(app, auth, ws, conversation):
    vip = made_label(app, ws, "VIP")
    for _ in range(2):
        assert put_on(auth, conversation.id, vip.id).status_code == 200
    assert labels_on(conversation.id) == ["VIP"]
    assert len(label_events(conversation.id)) == 1
    for _ in range(2):
        assert take_off(auth, conversation.id, vip.id).status_code == 200
    assert len(label_events(conversation.id)) == 2


def test_a_new_message_puts_the_row_at_the_top_of_its_labels_lists(app, auth, ws, visitor,
                                                                    conversation):
    vip = made_label(app, ws, "VIP")
    assert put_on(auth, conversation.id, vip.id).status_code == 200
    assert visitor.send("One more thing").status_code == 200
    with connection():
        message_event = (ChatEvent.select().where((ChatEvent.conversation_id == conversation.id)
                                                  & (ChatEvent.kind == ChatEvent.MESSAGE))
                         .order_by(ChatEvent.seq.desc()).first())
    html = agents_html(app, message_event)
    assert 'hx-swap-oob="afterbegin:#inbox-rows"' in html
    assert f'hx-swap-oob="afterbegin:#inbox-rows-label-{vip.id}"' in html
    assert html.count(">VIP</span>") == 3  # the same row, in each list it belongs in


def test_the_inbox_filter_shows_only_conversations_with_the_label(app, auth, ws, site, online):
    first, second, third = start_conversations(app, site, ["Parcel?", "Gift cards?", "Refund?"])
    vip = made_label(app, ws, "VIP")
    made_label(app, ws, "Refund", "#dc2626")
    for conversation_id in (first, third):
        assert put_on(auth, conversation_id, vip.id).status_code == 200
    page = text(auth.get(f"/dashboard/inbox?label={vip.id}"))
    assert rows(page) == [third, first]
    # Its own list id (live rows of this label only), and the other filters keep the label.
    assert f'id="inbox-rows-label-{vip.id}" data-label="{vip.id}"' in page
    assert f'href="/dashboard/inbox?filter=all&amp;label={vip.id}"' in page
    assert f'<option value="{vip.id}" data-label-option="{vip.id}" selected>VIP</option>' in page
    assert f'<input type="hidden" name="label" value="{vip.id}">' in page  # sent with a row opened
    auth.post_form(f"/dashboard/conversations/{third}/status", {"status": "resolved"})
    assert rows(text(auth.get(f"/dashboard/inbox?label={vip.id}"))) == [first]
    page = text(auth.get(f"/dashboard/inbox?filter=all&label={vip.id}"))
    assert rows(page) == [third, first] and f'id="inbox-rows-all-label-{vip.id}"' in page
    assert rows(text(auth.get(f"/dashboard/inbox?filter=resolved&label={vip.id}"))) == [third]
    assert rows(text(auth.get("/dashboard/inbox?filter=all"))) == [third, second, first]
    # The address of an opened conversation keeps the list beside it.
    response = auth.get(f"/dashboard/conversations/{first}?label={vip.id}",
                        headers={"HX-Request": "true", "HX-Boosted": "true",
                                 "HX-Target": "conversation-pane"})
    assert response.headers["HX-Push-Url"] == f"/dashboard/conversations/{first}?label={vip.id}"
    # The list pane alone, as the filter's form asks for it.
    response = auth.get(f"/dashboard/inbox?label={vip.id}",
                        headers={"HX-Request": "true", "HX-Target": "inbox"})
    assert response.headers["HX-Push-Url"] == f"/dashboard/inbox?label={vip.id}"
    assert "No conversations in this list carry this label." in text(
        auth.get(f"/dashboard/inbox?filter=mine&label={vip.id}"))


def test_deleting_a_label_or_a_conversation_takes_its_rows_with_it(app, auth, ws, site, online):
    first, second = start_conversations(app, site, ["Parcel?", "Gift cards?"])
    vip, refund = made_label(app, ws, "VIP"), made_label(app, ws, "Refund")
    for conversation_id in (first, second):
        for label in (vip, refund):
            assert put_on(auth, conversation_id, label.id).status_code == 200
    assert auth.post_form(f"/dashboard/labels/{vip.id}/delete").status_code == 303
    assert labels_on(first) == labels_on(second) == ["Refund"]
    assert auth.post_form(f"/dashboard/conversations/{first}/delete").status_code in (204, 303)
    with connection():
        assert [(r.conversation_id, r.label_id) for r in ConversationLabel.select()] == [
            (second, refund.id)]


# --- round-robin -----------------------------------------------------------------------------


def teammates(app, ws, names) -> list[int]:
    ids = []
    for name in names:
        mate = make_user(app, email=f"{name.lower()}@example.com", name=name)
        with connection():
            Membership.create(workspace=ws, user=mate, role=Membership.AGENT)
        ids.append(mate.id)
    return ids


def switch_on(auth):
    response = auth.post_form("/dashboard/assignment", {"round-robin-enabled": "y"}, htmx=True)
    assert response.status_code == 200 and "Round-robin assignment is on." in text(response)


def assignees(ids) -> list:
    with connection():
        found = {c.id: c.assignee_id for c in Conversation.select().where(Conversation.id.in_(ids))}
    return [found[i] for i in ids]


def test_round_robin_is_off_until_an_owner_switches_it_on(app, auth, ws, site, user):
    set_agent_online(ws, user.id)
    [first] = start_conversations(app, site, ["Hello"])
    assert assignees([first]) == [None]
    switch_on(auth)
    [second] = start_conversations(app, site, ["Hello"])
    assert assignees([second]) == [user.id]
    response = auth.post_form("/dashboard/assignment", {}, htmx=True)
    assert "Round-robin assignment is off." in text(response)
    [third] = start_conversations(app, site, ["Hello"])
    assert assignees([third]) == [None]


def test_round_robin_spreads_new_conversations_among_online_members_in_turn(app, auth, ws, site,
                                                                            user):
    """In user-id order, going round, and only among members with the dashboard open: an
    offline member, one whose page went quiet, and someone of another workspace get none."""
    ann, bob, gone, quiet = teammates(app, ws, ["Ann", "Bob", "Gone", "Quiet"])
    stranger = make_user(app, email="stranger@example.com", name="Stranger").id
    for member in (user.id, ann, bob):
        set_agent_online(ws, member)
    with connection():
        Presence.create(kind=Presence.AGENT, workspace_id=ws, subject_id=quiet, stream_id="quiet",
                        seen_at=utcnow() - timedelta(minutes=5))
        Presence.create(kind=Presence.AGENT, workspace_id=ws + 1000, subject_id=stranger,
                        stream_id="stranger", seen_at=utcnow())
    switch_on(auth)
    ids = start_conversations(app, site, [f"Question {i}" for i in range(7)])
    turn = sorted([user.id, ann, bob])
    assert assignees(ids) == (turn * 3)[:7]
    assert gone not in assignees(ids) and quiet not in assignees(ids)


def test_round_robin_skips_members_at_their_limit(app, auth, ws, site, user):
    [ann] = teammates(app, ws, ["Ann"])
    for member in (user.id, ann):
        set_agent_online(ws, member)
    with connection():
        ann_membership = Membership.get((Membership.user == ann) & (Membership.workspace == ws))
    response = auth.post_form(f"/dashboard/assignment/members/{ann_membership.id}",
                              {f"member-{ann_membership.id}-max_open": "1"}, htmx=True)
    assert response.status_code == 200 and "Limit saved for Ann." in text(response)
    switch_on(auth)
    ids = start_conversations(app, site, [f"Question {i}" for i in range(4)])
    counts = assignees(ids)
    assert counts.count(ann) == 1 and counts.count(user.id) == 3
    # Resolving her conversation makes room for one more.
    mine = ids[counts.index(ann)]
    auth.post_form(f"/dashboard/conversations/{mine}/status", {"status": "resolved"})
    more = start_conversations(app, site, ["Question 4", "Question 5"])
    assert sorted(assignees(more), key=str) == sorted([ann, user.id], key=str)
    # Everyone at their limit: nobody is given it, and it waits in the inbox.
    with connection():
        owner_membership = Membership.get((Membership.user == user.id) & (Membership.workspace == ws))
        labels.set_limit(owner_membership, 1)
    [last] = start_conversations(app, site, ["Question 6"])
    assert assignees([last]) == [None]


@pytest.mark.parametrize("value, message", [
    ("-1", labels.LIMIT_HINT), ("1001", labels.LIMIT_HINT), ("", labels.LIMIT_HINT),
    ("abc", "Not a valid integer value."), ("<b>5</b>", "Not a valid integer value.")])
def test_a_bad_limit_is_refused_beside_its_field_and_changes_nothing(app, auth, ws, user, value,
                                                                     message):
    with connection():
        own = Membership.get((Membership.user == user.id) & (Membership.workspace == ws))
    before = db_state(MemberLimit)
    response = auth.post_form(f"/dashboard/assignment/members/{own.id}",
                              {f"member-{own.id}-max_open": value}, htmx=True)
    assert response.status_code == 422
    assert message in text(response) and "<b>5</b>" not in text(response)
    assert db_state(MemberLimit) == before


def test_two_conversations_starting_at_once_are_both_assigned_in_turn(app, auth, ws, site, user):
    """Both transactions take the turn's row first: the second waits for the first, then
    moves the turn on from where the first left it. Neither fails, and with two members
    online each gets one (not both the same member from the same turn)."""
    [ann] = teammates(app, ws, ["Ann"])
    for member in (user.id, ann):
        set_agent_online(ws, member)
    switch_on(auth)
    guests = [WidgetVisitor.arrive(app, site.site_key) for _ in range(2)]
    with app.app_context(), connection():
        site_row = Site.get_by_id(site.id)
        visitors = [guest.record() for guest in guests]
    start = threading.Barrier(2)
    failures, started = [], []

    def begin(visitor):
        try:
            with app.app_context(), connection():
                start.wait()
                message = service.post_visitor_message(site_row, visitor, "At the same time")
                started.append(message.conversation_id)
        except Exception as exc:  # reported below, with the test's own assertion
            failures.append(exc)

    threads = [threading.Thread(target=begin, args=(v,)) for v in visitors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(assignees(started)) == sorted([user.id, ann])
    with connection():
        assert AssignmentRule.get_by_id(ws).last_user_id in (user.id, ann)
