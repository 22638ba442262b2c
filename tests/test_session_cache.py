"""Sessions and visitor tokens come from a short in-process cache, yet a session that ends
stops replying at once in this process and within the cache's lifetime in another."""

import logging
import time

import pytest

from app.accounts.models import Membership, UserSession
from app.chat.models import Message
from app.db import connection
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    agent_fixture,
    asgi_request,
    conversation_fixture,
    count,
    online_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)


def reply_with(app, cookie, csrf, conversation_id, body):
    """An htmx reply carrying exactly this session cookie and CSRF token (a browser tab that
    still holds them)."""
    return asgi_request(app, "POST", f"/dashboard/conversations/{conversation_id}/messages",
                        cookie, {"body": body, "csrf_token": csrf}, None, {"HX-Request": "true"})


def held(client):
    """What a browser tab keeps: its session cookie and the page's CSRF token."""
    app = client.raw.application
    csrf = client.csrf()
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value, csrf


def replies_in(conversation_id) -> int:
    return count(Message, (Message.conversation == conversation_id)
                 & (Message.sender == Message.AGENT))


def test_reply_after_logout_is_refused_at_once(app, auth, conversation):
    cookie, csrf = held(auth)
    assert reply_with(app, cookie, csrf, conversation.id, "First").status_code == 200
    assert auth.post_form("/logout").status_code in (302, 303)
    refused = reply_with(app, cookie, csrf, conversation.id, "After logout")
    assert refused.status_code == 401
    assert "/login" in refused.headers["HX-Redirect"]
    assert replies_in(conversation.id) == 1


def test_removed_member_cannot_reply_at_once(app, auth, ws, agent, conversation):
    cookie, csrf = held(agent["client"])
    assert reply_with(app, cookie, csrf, conversation.id, "Agent here").status_code == 200
    with connection():
        membership = Membership.get((Membership.user == agent["user"].id)
                                    & (Membership.workspace == ws))
    removed = auth.post_form(f"/dashboard/team/members/{membership.id}/remove")
    assert removed.status_code == 200, text(removed)
    refused = reply_with(app, cookie, csrf, conversation.id, "Still here?")
    assert refused.status_code == 404
    assert replies_in(conversation.id) == 1


@pytest.mark.config(SHORT_CACHE_SECONDS=0.3)
def test_session_revoked_by_another_process_ends_within_the_cache_lifetime(
        app, auth, conversation):
    cookie, csrf = held(auth)
    assert reply_with(app, cookie, csrf, conversation.id, "First").status_code == 200
    with connection():  # as another process would: straight in the database
        UserSession.delete().execute()
    time.sleep(app.config["SHORT_CACHE_SECONDS"] + 0.1)
    refused = reply_with(app, cookie, csrf, conversation.id, "After revocation")
    assert refused.status_code == 401
    assert replies_in(conversation.id) == 1


# A lifetime far beyond the test's length: the count must not depend on the box's speed.
@pytest.mark.config(SHORT_CACHE_SECONDS=600)
def test_replies_read_the_session_row_once(app, auth, conversation, caplog):
    cookie, csrf = held(auth)
    caplog.set_level(logging.DEBUG, logger="peewee")
    for n in range(5):
        assert reply_with(app, cookie, csrf, conversation.id, f"Reply {n}").status_code == 200
    session_reads = [r for r in caplog.records if r.name == "peewee"
                     and "SELECT" in r.getMessage() and '"user_session"' in r.getMessage()]
    assert len(session_reads) == 1
    assert replies_in(conversation.id) == 5


@pytest.mark.config(SHORT_CACHE_SECONDS=600)
def test_visitor_messages_read_the_visitor_and_site_once(app, visitor, conversation, caplog):
    caplog.set_level(logging.DEBUG, logger="peewee")
    for n in range(4):
        assert visitor.send(f"Message {n}").status_code == 200
    selects = [r.getMessage() for r in caplog.records
               if r.name == "peewee" and r.getMessage().startswith("('SELECT")]
    # At most once each (the conversation's first message may already have read them).
    assert sum('FROM "visitor"' in s for s in selects) <= 1
    assert sum('FROM "site"' in s for s in selects) <= 1
