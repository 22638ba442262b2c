"""The inbox page costs the same few statements whatever its rows show, a search page reads no
conversation list, and an inbox row on the page is the very HTML a live event sends for it."""

import logging
import re
from datetime import timedelta

from flask import render_template

from app.accounts.models import Membership
from app.chat import service
from app.chat.models import Conversation
from app.db import connection, utcnow
from app.widget.models import Visitor
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    WidgetVisitor,
    agent_fixture,
    online_fixture,
    site_fixture,
    text,
    ws_fixture,
)
from tests.conftest import make_user

ROW = re.compile(r'<li id="conv-(\d+)" class="conv-row.*?</li>', re.S)


def start(app, site, n) -> list[int]:
    ids = []
    for i in range(n):
        guest = WidgetVisitor.arrive(app, site.site_key)
        assert guest.send(f"Question number {i}").status_code == 200
        ids.append(guest.conversation().id)
    return ids


def teammates(app, ws, n) -> list[int]:
    ids = []
    for i in range(n):
        mate = make_user(app, email=f"mate{i}@example.com", name=f"Mate {i} <b>")
        with connection():
            Membership.create(workspace=ws, user=mate, role=Membership.AGENT)
        ids.append(mate.id)
    return ids


def selects(caplog, client, url) -> list[str]:
    caplog.clear()
    response = client.get(url)
    assert response.status_code == 200, text(response)
    return [r.getMessage() for r in caplog.records
            if r.name == "peewee" and "SELECT" in r.getMessage()]


def test_inbox_page_asks_as_many_statements_with_many_assignees_as_with_one(
        app, auth, ws, site, online, caplog):
    ids = start(app, site, 4)
    mates = teammates(app, ws, 3)
    with connection():
        Conversation.update(assignee=mates[0]).where(Conversation.id == ids[0]).execute()
    auth.get("/dashboard/inbox")  # the first request of a thread prepares its statements
    caplog.set_level(logging.DEBUG, logger="peewee")
    one = selects(caplog, auth, "/dashboard/inbox")
    with connection():
        for conversation_id, mate in zip(ids[1:], mates[1:], strict=False):
            Conversation.update(assignee=mate).where(Conversation.id == conversation_id).execute()
    many = selects(caplog, auth, "/dashboard/inbox")
    assert len(many) == len(one), "\n".join(many)


def test_search_page_reads_no_conversation_list(app, auth, site, online, caplog):
    start(app, site, 2)
    caplog.set_level(logging.DEBUG, logger="peewee")
    statements = selects(caplog, auth, "/dashboard/inbox?q=question")
    assert not [s for s in statements if 'FROM "conversation"' in s
                and '"last_activity_at" DESC' in s], statements


def test_inbox_row_is_the_html_a_live_event_sends(app, auth, ws, site, online):
    ids = start(app, site, 5)
    mates = teammates(app, ws, 2)
    with connection():
        conversations = {c.id: c for c in Conversation.select().where(Conversation.id << ids)}
        # Every way a row can look: named, e-mail only, anonymous visitors; assigned to two
        # teammates (a name needing escaping), nobody; resolved, over the plan's limit, read.
        Visitor.update(name="Ana <Visitor>").where(Visitor.id == conversations[ids[0]].visitor_id).execute()
        Visitor.update(email="e@mail.example").where(Visitor.id == conversations[ids[1]].visitor_id).execute()
        Conversation.update(assignee=mates[0]).where(Conversation.id << ids[:2]).execute()
        Conversation.update(assignee=mates[1], over_limit=True).where(Conversation.id == ids[2]).execute()
        Conversation.update(unread_count=0, last_preview="a < b & c").where(Conversation.id == ids[3]).execute()
        Conversation.update(status=Conversation.RESOLVED,
                            last_activity_at=utcnow() - timedelta(days=40)).where(
            Conversation.id == ids[4]).execute()
    page = text(auth.get("/dashboard/inbox?filter=all"))
    rows = {int(m.group(1)): m.group(0) for m in ROW.finditer(page)}
    assert sorted(rows) == sorted(ids)
    assert "Mate 0 &lt;b&gt;" in page and "Ana &lt;Visitor&gt;" in page and "over plan limit" in page
    with app.test_request_context(), connection():
        for conversation_id in ids:
            live = render_template("chat/_inbox_row.html",
                                   conversation=service.CONVERSATION.first(conversation_id))
            assert live.strip() == rows[conversation_id].strip()
