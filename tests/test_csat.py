"""Satisfaction ratings (app/chat/ratings.py): once an agent resolves a conversation, the widget
asks its visitor for a rating, once; the agent's page shows it live and the reports count it."""

import pytest

from app.chat import live, ratings, render
from app.chat.models import ChatEvent, Conversation
from app.chat.ratings import ConversationRating
from app.db import connection
from app.reports import service as reports
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    WidgetVisitor,
    conversation_fixture,
    online_fixture,
    rival_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)

FORM = '<form class="w-rating-form"'


def set_status(auth, conversation_id, status):
    response = auth.post_form(f"/dashboard/conversations/{conversation_id}/status",
                              {"status": status})
    assert response.status_code in (200, 303), text(response)


def rate(guest, conversation_id, rating="good", comment="", headers=None):
    return guest.http.post(guest.url("rating"), headers=guest.headers if headers is None else headers,
                           data={"conversation": str(conversation_id), "rating": rating,
                                 "comment": comment})


def stored() -> list[tuple]:
    with connection():
        return list(ConversationRating.select(ConversationRating.conversation,
                                              ConversationRating.rating,
                                              ConversationRating.comment).tuples())


def last_event(conversation_id, kind) -> ChatEvent:
    with connection():
        return (ChatEvent.select().where((ChatEvent.conversation_id == conversation_id)
                                         & (ChatEvent.kind == kind))
                .order_by(ChatEvent.seq.desc()).first())


def streamed(app, event, audience) -> str | None:
    [sse] = render.Renderer(app).events([(event, (audience,))])
    data = sse[audience]
    if data is None:
        return None
    return "\n".join(line[6:] for line in data.decode().split("\r\n") if line.startswith("data: "))


@pytest.fixture(name="resolved")
def resolved_fixture(auth, conversation) -> Conversation:
    set_status(auth, conversation.id, Conversation.RESOLVED)
    return conversation


def test_a_resolved_conversation_asks_once_and_the_agent_sees_the_rating(app, auth, visitor,
                                                                        conversation):
    """The whole flow: no question while open; resolving sends the form to the visitor's
    stream and puts it in the chat on reload; the rating is stored, thanked for, told to the
    agents' stream and shown on the conversation's page; after that the chat never asks again,
    not even when the conversation is reopened and resolved once more."""
    assert FORM not in text(visitor.chat())
    set_status(auth, conversation.id, Conversation.RESOLVED)
    live_form = streamed(app, last_event(conversation.id, ChatEvent.STATUS), live.VISITOR)
    assert '<div id="rating" class="w-rating" hx-swap-oob="true">' in live_form
    assert FORM in live_form
    chat = text(visitor.chat())
    assert FORM in chat and "<legend>How was this conversation?</legend>" in chat
    for value in ("good", "okay", "bad"):
        assert f'<input type="radio" name="rating" value="{value}">' in chat
    assert '<label for="rating-comment">' in chat and '<button type="submit"' in chat

    answer = rate(visitor, conversation.id, "good", "  Quick and kind.  ")
    assert answer.status_code == 200 and "Thank you for your rating." in text(answer)
    assert stored() == [(conversation.id, "good", "Quick and kind.")]
    agents = streamed(app, last_event(conversation.id, ratings.EVENT), live.AGENT)
    assert f'<div id="rating-{conversation.id}" class="conv-rating" hx-swap-oob="true">' in agents
    assert "Rated: good</strong> — “Quick and kind.”" in agents
    assert streamed(app, last_event(conversation.id, ratings.EVENT), live.VISITOR) is None
    page = text(auth.get(f"/dashboard/conversations/{conversation.id}"))
    assert "Rated: good</strong> — “Quick and kind.”" in page
    assert FORM not in text(visitor.chat())

    set_status(auth, conversation.id, Conversation.OPEN)
    set_status(auth, conversation.id, Conversation.RESOLVED)
    assert FORM not in streamed(app, last_event(conversation.id, ChatEvent.STATUS), live.VISITOR)
    assert FORM not in text(visitor.chat())


def test_reopening_an_unrated_conversation_takes_the_question_away(app, auth, visitor, resolved):
    set_status(auth, resolved.id, Conversation.OPEN)
    html = streamed(app, last_event(resolved.id, ChatEvent.STATUS), live.VISITOR)
    assert '<div id="rating" class="w-rating" hx-swap-oob="true">' in html and FORM not in html
    assert FORM not in text(visitor.chat())


def test_a_second_rating_is_refused_and_the_first_kept(visitor, resolved):
    assert rate(visitor, resolved.id, "bad", "slow").status_code == 200
    again = rate(visitor, resolved.id, "good", "changed my mind")
    assert again.status_code == 409
    assert "This conversation was rated already; the first rating is kept." in text(again)
    assert stored() == [(resolved.id, "bad", "slow")]


def test_an_open_conversation_cannot_be_rated(visitor, conversation):
    answer = rate(visitor, conversation.id, "good")
    assert answer.status_code == 409 and "still open" in text(answer)
    assert stored() == []


@pytest.mark.parametrize("rating, comment, message", [
    ("excellent", "", "Choose good, okay or bad."),
    ("", "no choice", "Choose good, okay or bad."),
    ("good", "x" * 501, "Keep the comment to 500 characters."),
])
def test_a_bad_rating_is_refused_beside_the_form_and_nothing_is_kept(visitor, resolved, rating,
                                                                    comment, message):
    answer = rate(visitor, resolved.id, rating, comment)
    assert answer.status_code == 422
    html = text(answer)
    assert message in html and FORM in html and 'id="rating-error" role="alert"' in html
    assert stored() == []
    assert rate(visitor, resolved.id, "okay", "x" * 500).status_code == 200


def test_another_visitors_or_sites_conversation_is_a_404(app, auth, site, visitor, resolved, rival):
    """Only the visitor's own conversation on this site: another visitor of the same site, the
    same id asked through another site, another workspace's conversation, and ids that are
    no conversation are all 'not found', and nothing is stored."""
    stranger = WidgetVisitor.arrive(app, site.site_key)
    assert rate(stranger, resolved.id).status_code == 404
    guest = rival["visitor"]
    rival["client"].post_form(f"/dashboard/conversations/{rival['conversation'].id}/status",
                              {"status": "resolved"})
    assert rate(guest, resolved.id).status_code == 404
    assert rate(visitor, rival["conversation"].id).status_code == 404
    for bad in ("0", "-1", "abc", "99999999999999999999999", ""):
        assert rate(visitor, bad).status_code == 404
    assert stored() == []


def test_a_post_without_the_visitors_token_is_refused(visitor, resolved):
    """The widget's posts are protected by the token header a cross-site form cannot send:
    without it, or with another site's token, nothing is stored."""
    assert rate(visitor, resolved.id, headers={}).status_code == 401
    assert rate(visitor, resolved.id, headers={"X-Lumnar-Visitor": "forged"}).status_code == 401
    assert stored() == []


def test_markup_in_a_comment_stays_text(app, auth, visitor, resolved):
    comment = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    assert rate(visitor, resolved.id, "okay", comment).status_code == 200
    page = text(auth.get(f"/dashboard/conversations/{resolved.id}"))
    agents = streamed(app, last_event(resolved.id, ratings.EVENT), live.AGENT)
    for html in (page, agents):
        assert "<script>alert(2)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_a_rating_goes_with_its_conversation(app, visitor, resolved):
    assert rate(visitor, resolved.id).status_code == 200
    assert visitor.delete().status_code == 200
    assert stored() == []


def test_the_reports_count_ratings_per_site_and_agent(app, auth, user, ws, site, visitor,
                                                       resolved):
    """Good, okay and bad per site and per agent (who answered first), with the share of good."""
    from tests.chat_fixtures import reply

    with connection():
        assert reports.report(ws, 7).satisfaction["total"].rated == 0
    second = WidgetVisitor.arrive(app, site.site_key)
    assert second.send("Another question").status_code == 200
    other = second.conversation()
    assert reply(auth, other.id, {"body": "Here to help"}).status_code in (200, 303)
    set_status(auth, other.id, Conversation.RESOLVED)
    assert rate(visitor, resolved.id, "good").status_code == 200
    assert rate(second, other.id, "bad").status_code == 200
    with connection():
        sat = reports.report(ws, 7).satisfaction
    assert (sat["total"].good, sat["total"].okay, sat["total"].bad) == (1, 0, 1)
    assert sat["total"].good_share == "50 %"
    [shop] = sat["site"]
    assert (shop.label, shop.good, shop.bad, shop.good_share) == ("Shop", 1, 1, "50 %")
    by_agent = {row.label: (row.good, row.okay, row.bad) for row in sat["agent"]}
    assert by_agent[user.name] == (0, 0, 1) and by_agent["No reply yet"] == (1, 0, 0)
    page = text(auth.get("/dashboard/reports?days=7"))
    assert '<h2 id="satisfaction-title">Satisfaction</h2>' in page
    assert "2 rated, 50 % good." in page
    assert "<li><strong>Shop</strong>: 1 good, 0 okay, 1 bad (50 % good)</li>" in page
