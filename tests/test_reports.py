"""Reports: conversations per day, median first response and resolution times, per site and
per agent, in the workspace's time zone, for the workspace's own data only.

The numbers are checked against a fixture whose every time was chosen by hand (rows written
straight with the models), so each expected count and median below is worked out in its
comment; the page's tables and the CSV downloads must then say the same."""

import csv
import io
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from app.accounts.models import Membership, Workspace
from app.chat.labels import ConversationLabel, Label
from app.chat.models import ChatEvent, Conversation, EventCounter, Message
from app.db import connection, utcnow
from app.reports import service
from app.reports.models import ConversationFact
from app.widget.models import Visitor
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by name)
    agent_fixture,
    conversation_fixture,
    make_site,
    online_fixture,
    site_fixture,
    visitor_fixture,
    workspace_id_of,
    ws_fixture,
)
from tests.conftest import Client, build_app, log_in, make_user

ZONE = "Europe/Berlin"  # UTC+1 in March before the 30th: 23:30 UTC is the next local day
NOW = datetime(2025, 3, 20, 12, 0)  # UTC; 13:00 in Berlin, so "today" is 20 March


def at(day: int, clock: str, shift: timedelta = timedelta(0)) -> datetime:
    """A UTC time on a day of March 2025 (February for day <= 0), moved by `shift`."""
    hour, minute, *second = (int(x) for x in clock.split(":"))
    return datetime(2025, 3, 1) + timedelta(days=day - 1, hours=hour, minutes=minute,
                                            seconds=second[0] if second else 0) + shift


class Writer:
    """Conversations, messages and their chat events written straight into the tables, each
    at the time given (the chat's services would stamp them with the clock), the events
    numbered after the workspace's last one as the chat numbers them."""

    def __init__(self, workspace_id: int):
        self.ws = workspace_id
        counter = EventCounter.get_or_none(EventCounter.workspace_id == workspace_id)
        self.seq = counter.seq if counter else 0

    def conversation(self, site, started, status=Conversation.OPEN) -> Conversation:
        visitor = Visitor.create(site=site, first_seen_at=started, last_seen_at=started)
        return Conversation.create(workspace=self.ws, site=site, visitor=visitor, status=status,
                                   created_at=started, last_activity_at=started)

    def message(self, conv, sender, when, author=None) -> None:
        message = Message.create(conversation=conv, workspace_id=self.ws, sender=sender,
                                 author=author, body=f"{sender} at {when}", created_at=when)
        self.event(conv, ChatEvent.MESSAGE, when, ref_id=message.id, actor=sender)

    def status(self, conv, when, actor="") -> None:
        self.event(conv, ChatEvent.STATUS, when, actor=actor)

    def event(self, conv, kind, when, ref_id=0, actor="") -> None:
        self.seq += 1
        ChatEvent.create(workspace_id=self.ws, conversation_id=conv.id, seq=self.seq, kind=kind,
                         ref_id=ref_id, actor=actor, created_at=when)
        EventCounter.insert(workspace_id=self.ws, seq=self.seq).on_conflict(
            conflict_target=[EventCounter.workspace_id],
            update={EventCounter.seq: self.seq}).execute()


V, A, RESOLVED = Message.VISITOR, Message.AGENT, Conversation.RESOLVED


def build(ws: int, shop, blog, olive: int, andy: int, shift=timedelta(0)) -> dict:
    """The hand-made week (times UTC; Berlin is one hour ahead), moved by `shift`: the
    conversations by name and the writer."""
    w = Writer(ws)

    def t(day, clock):
        return at(day, clock, shift)

    # c1, Shop, 18 Mar: answered by Olive after 120 s, resolved after 3600 s.
    c1 = w.conversation(shop, t(18, "09:00"), RESOLVED)
    w.message(c1, V, t(18, "09:00"))
    w.message(c1, A, t(18, "09:02"), olive)
    w.status(c1, t(18, "10:00"), RESOLVED)
    # c2, Shop, 23:30 UTC on the 18th = 00:30 on 19 Mar in Berlin: Andy after 45 s; open.
    c2 = w.conversation(shop, t(18, "23:30"))
    w.message(c2, V, t(18, "23:30"))
    w.message(c2, A, t(18, "23:30:45"), andy)
    # c3, Blog, 19 Mar: two visitor messages, Olive 600 s after the first; resolved, reopened
    # by the visitor and resolved again: the last resolution counts (3600 s).
    c3 = w.conversation(blog, t(19, "08:00"), RESOLVED)
    w.message(c3, V, t(19, "08:00"))
    w.message(c3, V, t(19, "08:01"))
    w.message(c3, A, t(19, "08:10"), olive)
    w.status(c3, t(19, "08:30"), RESOLVED)
    w.status(c3, t(19, "08:40"))  # the visitor's new message reopened it
    w.status(c3, t(19, "09:00"), RESOLVED)
    # c4, Blog, 19 Mar: never answered, open.
    c4 = w.conversation(blog, t(19, "12:00"))
    w.message(c4, V, t(19, "12:00"))
    # c5, Shop, 20 Mar: answered after 300 s by someone who has left (no author), resolved
    # after 1800 s, assigned afterwards (an unmarked status event that must not count).
    c5 = w.conversation(shop, t(20, "07:00"), RESOLVED)
    w.message(c5, V, t(20, "07:00"))
    w.message(c5, A, t(20, "07:05"), None)
    w.status(c5, t(20, "07:30"), RESOLVED)
    w.status(c5, t(20, "08:00"))
    # c6, Shop, 17 Mar: Olive after 30 s; resolved before resolutions were marked: its last
    # status event (after 7200 s) is the resolution.
    c6 = w.conversation(shop, t(17, "10:00"), RESOLVED)
    w.message(c6, V, t(17, "10:00"))
    w.message(c6, A, t(17, "10:00:30"), olive)
    w.status(c6, t(17, "12:00"))
    # c7, Shop, 1 Feb: only in the 90-day view. Olive after 10 s; open.
    c7 = w.conversation(shop, t(-27, "10:00"))
    w.message(c7, V, t(-27, "10:00"))
    w.message(c7, A, t(-27, "10:00:10"), olive)
    # c8, Shop, 18 Mar: Andy after 60 s, resolved, then reopened: not resolved now.
    c8 = w.conversation(shop, t(18, "14:00"))
    w.message(c8, V, t(18, "14:00"))
    w.message(c8, A, t(18, "14:01"), andy)
    w.status(c8, t(18, "14:30"), RESOLVED)
    w.status(c8, t(18, "15:00"))
    return {"writer": w, "c1": c1, "c2": c2, "c3": c3, "c4": c4, "c5": c5, "c6": c6, "c8": c8}


@pytest.fixture
def week(app, user, ws, agent):
    """Two sites of the owner's (Berlin) workspace, its owner Olive and agent Andy, and the
    hand-made conversations (see build)."""
    shop = make_site(app, ws, name="Shop")
    blog = make_site(app, ws, name="Blog", origins="https://blog.example.com")
    with connection():
        Workspace.update(timezone=ZONE).where(Workspace.id == ws).execute()
        made = build(ws, shop, blog, user.id, agent["user"].id)
    return {"ws": ws, "shop": shop, "blog": blog, "olive": user.id, "andy": agent["user"].id,
            **made}


def figures(row) -> tuple:
    return (row.conversations, row.answered, row.median_first_response, row.resolved,
            row.median_resolution)


def test_the_numbers_match_the_hand_computed_week(app, week):
    """Counts per day in the workspace's zone, medians overall, per site and per agent are
    exactly those worked out by hand for the fixture."""
    with connection():
        rep = service.report(week["ws"], 7, now=NOW)
    assert rep.zone == ZONE and (rep.first, rep.last) == (at(14, "0:00").date(), NOW.date())
    # Seven conversations (c7 is older). First responses 30 45 60 120 300 600: median
    # (60 + 120) / 2 = 90. Resolutions 1800 3600 3600 7200: median 3600.
    assert figures(rep.total) == (7, 6, 90, 4, 3600)
    # c6 on the 17th; c1, c8 on the 18th; c2 (00:30 local), c3, c4 on the 19th; c5 today.
    assert [(r.label, r.conversations) for r in rep.by_day] == [
        ("2025-03-14", 0), ("2025-03-15", 0), ("2025-03-16", 0), ("2025-03-17", 1),
        ("2025-03-18", 2), ("2025-03-19", 3), ("2025-03-20", 1)]
    day = {r.label: figures(r) for r in rep.by_day}
    assert day["2025-03-18"] == (2, 2, 90, 1, 3600)  # (60 + 120) / 2; c1 resolved
    assert day["2025-03-19"] == (3, 2, 323, 1, 3600)  # (45 + 600) / 2 = 322.5, halves up
    assert day["2025-03-14"] == (0, 0, None, 0, None)
    # Sites in name order: Blog has c3, c4; Shop has c1 c2 c5 c6 c8 (30 45 60 120 300 -> 60;
    # resolutions 1800 3600 7200 -> 3600).
    assert [(r.label, figures(r)) for r in rep.by_site] == [
        ("Blog", (2, 1, 600, 1, 3600)), ("Shop", (5, 5, 60, 3, 3600))]
    # Olive first on c1 c3 c6 (120 600 30 -> 120; 3600 3600 7200 -> 3600), Andy on c2 c8
    # ((45 + 60) / 2 = 52.5 -> 53, nothing resolved), a former agent on c5, nobody on c4.
    assert [(r.label, figures(r)) for r in rep.by_agent] == [
        ("Olive Owner", (3, 3, 120, 3, 3600)), ("Andy Agent", (2, 2, 53, 0, None)),
        ("Former agent", (1, 1, 300, 1, 1800)), ("No reply yet", (1, 0, None, 0, None))]


def test_each_label_counts_its_conversations_and_times(app, week):
    """Per label: a conversation with two labels counts for both, one with none for none, a
    label on no conversation of the period is a row of zeros."""
    with connection():
        vip = Label.create(workspace=week["ws"], name="VIP", folded="vip", colour="#aa0000")
        refund = Label.create(workspace=week["ws"], name="Refund", folded="refund", colour="#00aa00")
        Label.create(workspace=week["ws"], name="Idle", folded="idle", colour="#0000aa")
        for conv, label in (("c1", vip), ("c3", vip), ("c3", refund), ("c4", refund)):
            ConversationLabel.create(conversation=week[conv].id, label=label)
        rep = service.report(week["ws"], 7, now=NOW)
    # VIP: c1 (120 s, resolved 3600) and c3 (600, 3600): median (120 + 600) / 2 = 360.
    # Refund: c3 (600, 3600) and c4 (never answered, open).
    assert [(r.label, figures(r)) for r in rep.by_label] == [
        ("Idle", (0, 0, None, 0, None)), ("Refund", (2, 1, 600, 1, 3600)),
        ("VIP", (2, 2, 360, 2, 3600))]
    assert service.csv_rows(rep, "label")[1:] == [
        ["Idle", 0, 0, "", 0, ""], ["Refund", 2, 1, 600, 1, 3600], ["VIP", 2, 2, 360, 2, 3600]]


def test_the_ninety_day_view_takes_in_older_conversations(app, week):
    """c7 (1 February) is in the 90-day view and in no shorter one."""
    with connection():
        long, month = service.report(week["ws"], 90, now=NOW), service.report(week["ws"], 30, now=NOW)
    assert len(long.by_day) == 90 and long.by_day[-1].label == "2025-03-20"
    assert figures(long.total) == (8, 7, 60, 4, 3600)  # 10 joins: 10 30 45 60 120 300 600
    assert {r.label: r.conversations for r in long.by_day}["2025-02-01"] == 1
    assert month.total.conversations == 7


def test_the_report_follows_new_replies_resolutions_and_deletions(app, week):
    """Figures made at one view are brought up to date at the next from the chat's events
    since: a reply to the unanswered c4, c2 resolved, c6 deleted."""
    w = week["writer"]
    with connection():
        assert service.report(week["ws"], 7, now=NOW).total.conversations == 7
        w.message(week["c4"], A, at(19, "12:20"), week["olive"])  # 1200 s after its start
        Conversation.update(status=RESOLVED).where(Conversation.id == week["c2"].id).execute()
        w.status(week["c2"], at(19, "00:30"), RESOLVED)  # 3600 s after its start
        ChatEvent.delete().where(ChatEvent.conversation_id == week["c6"].id).execute()
        week["c6"].delete_instance()
        w.event(week["c6"], ChatEvent.DELETED, at(20, "09:00"))
        rep = service.report(week["ws"], 7, now=NOW)
    # c1 c2 c3 c4 c5 c8. First responses 45 60 120 300 600 1200: (120 + 300) / 2 = 210;
    # resolutions c1 c2 c3 3600, c5 1800: 3600.
    assert figures(rep.total) == (6, 6, 210, 4, 3600)
    # Olive: c1 c3 c4 (120 600 1200 -> 600; resolved c1 c3); Andy: c2 c8 (53; c2 resolved).
    assert [(r.label, figures(r)) for r in rep.by_agent] == [
        ("Olive Owner", (3, 3, 600, 2, 3600)), ("Andy Agent", (2, 2, 53, 1, 3600)),
        ("Former agent", (1, 1, 300, 1, 1800))]


def test_a_member_who_left_counts_as_a_former_agent(app, week):
    """Once Andy leaves the workspace his first replies are a former agent's, in the report
    and in the figures it keeps (as in his messages)."""
    from app.accounts import service as accounts

    with connection():
        service.report(week["ws"], 7, now=NOW)
        Membership.delete().where((Membership.workspace == week["ws"])
                                  & (Membership.user == week["andy"])).execute()
        accounts.forget_member(week["ws"], week["andy"])
        rep = service.report(week["ws"], 7, now=NOW)
        kept = ConversationFact.select().where(ConversationFact.replier_id == week["andy"]).count()
    # The former agent now has c5 (300) and Andy's c2 (45) and c8 (60): median 60.
    assert [(r.label, figures(r)) for r in rep.by_agent] == [
        ("Olive Owner", (3, 3, 120, 3, 3600)), ("Former agent", (3, 3, 60, 1, 1800)),
        ("No reply yet", (1, 0, None, 0, None))]
    assert kept == 0


def test_the_figures_go_with_their_conversation_and_their_workspace(app, week):
    """A deleted conversation takes its figures with it at once (they cascade), and deleting
    the workspace leaves none of its figures nor its cursor."""
    from app.privacy.deletion import service as deletion
    from app.reports.models import ReportCursor

    with app.app_context(), connection():
        service.report(week["ws"], 90, now=NOW)
        assert ConversationFact.select().where(ConversationFact.workspace_id == week["ws"]).count() == 8
        week["c1"].delete_instance()
        assert ConversationFact.get_or_none(ConversationFact.conversation == week["c1"].id) is None
        deletion.delete_workspace(week["ws"])
        assert ConversationFact.select().count() == 0 and ReportCursor.select().count() == 0


def test_another_workspaces_conversations_never_count(app, week):
    """A rival workspace's conversations, sites and agents, on the same days, are in none of
    the owner's numbers, and the owner's are in none of theirs."""
    rival = make_user(app, email="rival@example.com", name="Rita Rival")
    with connection():
        rival_ws = workspace_id_of(rival.email)
    rival_site = make_site(app, rival_ws, name="Rival shop", origins="https://rival.example.org")
    with connection():
        build(rival_ws, rival_site, rival_site, rival.id, rival.id)
        ours, theirs = service.report(week["ws"], 90, now=NOW), service.report(rival_ws, 90, now=NOW)
    assert figures(ours.total) == (8, 7, 60, 4, 3600)
    assert [r.label for r in ours.by_site] == ["Blog", "Shop"]
    assert "Rita Rival" not in [r.label for r in ours.by_agent]
    assert [r.label for r in theirs.by_site] == ["Rival shop"]
    assert [r.label for r in theirs.by_agent] == ["Rita Rival", "Former agent", "No reply yet"]
    assert theirs.total.conversations == 8


# --- each day's figures, kept between views ------------------------------------------------------
# The first view of each test below keeps every day's figures; the changes are then made
# through the product's own services, and the next view must show exactly the new numbers.


def epoch(when: datetime) -> int:
    return int(when.replace(tzinfo=timezone.utc).timestamp())


def on(rep, day: str) -> tuple:
    return figures(next(r for r in rep.by_day if r.label == day))


def test_whole_seconds_drop_the_fraction_alike_on_every_engine(app, week):
    """A time 0.9 s past a whole second counts as that second in the report's own SQL and in
    the query builder's, on SQLite and on PostgreSQL alike (a cast alone rounds it up on
    PostgreSQL: a response time one second longer there than on SQLite)."""
    from app.db import database, dialect, epoch_seconds

    when = datetime(2025, 3, 19, 12, 0, 0, 900_000)
    with connection():
        Workspace.update(created_at=when).where(Workspace.id == week["ws"]).execute()
        built = (Workspace.select(epoch_seconds(Workspace.created_at).alias("s"))
                 .where(Workspace.id == week["ws"]).scalar())
        written = database.execute_sql(
            "SELECT " + service.EPOCH[dialect()].format("created_at") + " FROM workspace WHERE id = "
            + str(week["ws"])).fetchone()[0]
    assert built == written == epoch(when.replace(microsecond=0))


def test_a_past_day_changed_by_a_late_reply_shows_the_new_median_at_the_next_view(app, week):
    """An agent's reply to c4, unanswered since the 19th, sent through the chat now (a late
    first response): the 19th, kept from the first view, has it at the next one."""
    from app.accounts.models import User
    from app.chat import service as chat

    with connection():
        before = service.report(week["ws"], 7, now=NOW)
    assert on(before, "2025-03-19") == (3, 2, 323, 1, 3600)
    with app.test_request_context(), connection():
        reply = chat.post_agent_reply(Conversation.get_by_id(week["c4"].id),
                                      User.get_by_id(week["olive"]), "Sorry for the wait!")
        rep = service.report(week["ws"], 7, now=NOW)
    late = epoch(reply.created_at) - epoch(at(19, "12:00"))
    assert late > 600  # sent today, long after 2025
    # The 19th: c2 45, c3 600, c4 `late`: 600.
    assert on(rep, "2025-03-19") == (3, 3, 600, 1, 3600)
    # All: 30 45 60 120 300 600 late: 120. Blog: c3 600, c4 late.
    assert figures(rep.total) == (7, 7, 120, 4, 3600)
    assert [(r.label, figures(r)) for r in rep.by_site] == [
        ("Blog", (2, 2, int((600 + late) / 2 + 0.5), 1, 3600)), ("Shop", (5, 5, 60, 3, 3600))]
    # Olive now first on c1 c3 c4 c6 (30 120 600 late: 360); nobody is left unanswered.
    assert [(r.label, figures(r)) for r in rep.by_agent] == [
        ("Olive Owner", (4, 4, 360, 3, 3600)), ("Andy Agent", (2, 2, 53, 0, None)),
        ("Former agent", (1, 1, 300, 1, 1800))]
    assert [(r.label, figures(r)) for r in rep.by_day if r.label != "2025-03-19"] == [
        (r.label, figures(r)) for r in before.by_day if r.label != "2025-03-19"]


def test_a_conversation_deleted_from_a_past_day_leaves_its_counts_at_the_next_view(app, week):
    """c6 (the 17th) deleted by an agent: its day, its site and its agent lose it."""
    from app.chat import service as chat

    with connection():
        assert on(service.report(week["ws"], 7, now=NOW), "2025-03-17") == (1, 1, 30, 1, 7200)
    with app.test_request_context(), connection():
        chat.delete_conversation(Conversation.get_by_id(week["c6"].id), A)
        rep = service.report(week["ws"], 7, now=NOW)
    assert on(rep, "2025-03-17") == (0, 0, None, 0, None)
    # First responses 45 60 120 300 600: 120; resolutions 1800 3600 3600: 3600.
    assert figures(rep.total) == (6, 5, 120, 3, 3600)
    # Shop: c1 c2 c5 c8 (45 60 120 300: 90; resolved c1 3600, c5 1800: 2700).
    assert [(r.label, figures(r)) for r in rep.by_site] == [
        ("Blog", (2, 1, 600, 1, 3600)), ("Shop", (4, 4, 90, 2, 2700))]
    # Olive keeps c1 c3 (120 600: 360), as many as Andy: names in order then.
    assert [(r.label, figures(r)) for r in rep.by_agent] == [
        ("Andy Agent", (2, 2, 53, 0, None)), ("Olive Owner", (2, 2, 360, 2, 3600)),
        ("Former agent", (1, 1, 300, 1, 1800)), ("No reply yet", (1, 0, None, 0, None))]


def test_a_day_that_lost_a_conversation_and_gained_another_counts_the_new_one_at_the_next_view(
        app, week):
    """c6 deleted from the 17th and c9 started that day (Andy after 20 s, open): the day has
    one conversation before and after, not the same one."""
    from app.chat import service as chat

    with connection():
        service.report(week["ws"], 7, now=NOW)
    with app.test_request_context(), connection():
        chat.delete_conversation(Conversation.get_by_id(week["c6"].id), A)
        w = Writer(week["ws"])  # numbers its events after the deletion's
        c9 = w.conversation(week["shop"], at(17, "15:00"))
        w.message(c9, V, at(17, "15:00"))
        w.message(c9, A, at(17, "15:00:20"), week["andy"])
        rep = service.report(week["ws"], 7, now=NOW)
    assert on(rep, "2025-03-17") == (1, 1, 20, 0, None)
    # First responses 20 45 60 120 300 600: 90; resolutions 1800 3600 3600: 3600.
    assert figures(rep.total) == (7, 6, 90, 3, 3600)
    # Andy: c2 45, c8 60, c9 20: 45.
    assert [(r.label, figures(r)) for r in rep.by_agent] == [
        ("Andy Agent", (3, 3, 45, 0, None)), ("Olive Owner", (2, 2, 360, 2, 3600)),
        ("Former agent", (1, 1, 300, 1, 1800)), ("No reply yet", (1, 0, None, 0, None))]


def test_a_member_who_left_counts_as_former_agent_in_days_already_summarised(app, week):
    """Andy removed from the team after the first view: his first replies on days already
    kept (c2 on the 19th, c8 on the 18th) are a former agent's at the next view."""
    from app.accounts import service as accounts
    from app.accounts.models import User

    with connection():
        before = service.report(week["ws"], 7, now=NOW)
    assert "Andy Agent" in [r.label for r in before.by_agent]
    with app.test_request_context(), connection():
        andy = Membership.get((Membership.workspace == week["ws"]) & (Membership.user == week["andy"]))
        accounts.remove_member(Workspace.get_by_id(week["ws"]), User.get_by_id(week["olive"]), andy.id)
        rep = service.report(week["ws"], 7, now=NOW)
    # The former agent: c5 (300) and Andy's c2 (45) and c8 (60): 60.
    assert [(r.label, figures(r)) for r in rep.by_agent] == [
        ("Olive Owner", (3, 3, 120, 3, 3600)), ("Former agent", (3, 3, 60, 1, 1800)),
        ("No reply yet", (1, 0, None, 0, None))]
    assert [figures(r) for r in rep.by_day] == [figures(r) for r in before.by_day]


def test_a_label_put_on_a_conversation_of_a_past_day_counts_at_the_next_view(app, week):
    """A label put on c3 (the 19th) and taken off c1 (the 18th) through the inbox's service,
    after views that kept those days: each next view counts the label's conversations as
    they are."""
    from app.chat import labels

    with app.test_request_context(), connection():
        vip = labels.create(week["ws"], "VIP", "#aa0000")
        labels.put_on(week["c1"], vip)
        first = service.report(week["ws"], 7, now=NOW)
        labels.put_on(week["c3"], vip)
        second = service.report(week["ws"], 7, now=NOW)
        labels.take_off(week["c1"], vip)
        third = service.report(week["ws"], 7, now=NOW)
    assert [(r.label, figures(r)) for r in first.by_label] == [("VIP", (1, 1, 120, 1, 3600))]
    # c1 (120 s, resolved after 3600) and c3 (600, 3600): 360.
    assert [(r.label, figures(r)) for r in second.by_label] == [("VIP", (2, 2, 360, 2, 3600))]
    assert [(r.label, figures(r)) for r in third.by_label] == [("VIP", (1, 1, 600, 1, 3600))]


def test_a_label_deleted_and_a_new_one_made_counts_none_of_the_old_ones_conversations(
        app, week, engine):
    """SQLite gives a deleted label's id to the next label made: the days kept while the old
    label was on c1 and c3 must not count them for the new one."""
    from app.chat import labels

    with app.test_request_context(), connection():
        vip = labels.create(week["ws"], "VIP", "#aa0000")
        labels.put_on(week["c1"], vip)
        labels.put_on(week["c3"], vip)
        assert [figures(r) for r in service.report(week["ws"], 7, now=NOW).by_label] == [
            (2, 2, 360, 2, 3600)]
        labels.delete(vip)
        refund = labels.create(week["ws"], "Refund", "#00aa00")
        rep = service.report(week["ws"], 7, now=NOW)
    if engine == "sqlite":
        assert refund.id == vip.id
    assert [(r.label, figures(r)) for r in rep.by_label] == [("Refund", (0, 0, None, 0, None))]


def test_a_second_workspaces_changes_never_mix_into_the_days_kept_for_the_first(app, week):
    """A rival workspace with the same week in the same time zone (the same local days): a
    late reply and a deletion in theirs change their next view and nothing of ours."""
    from app.accounts.models import User
    from app.chat import service as chat

    rival = make_user(app, email="rival@example.com", name="Rita Rival")
    with connection():
        rival_ws = workspace_id_of(rival.email)
    rival_site = make_site(app, rival_ws, name="Rival shop", origins="https://rival.example.org")
    with connection():
        Workspace.update(timezone=ZONE).where(Workspace.id == rival_ws).execute()
        theirs = build(rival_ws, rival_site, rival_site, rival.id, rival.id)
        ours_before = service.report(week["ws"], 7, now=NOW)
        assert figures(service.report(rival_ws, 7, now=NOW).total) == (7, 6, 90, 4, 3600)
    with app.test_request_context(), connection():
        chat.post_agent_reply(Conversation.get_by_id(theirs["c4"].id), User.get_by_id(rival.id),
                              "Sorry for the wait!")
        chat.delete_conversation(Conversation.get_by_id(theirs["c6"].id), A)
        ours, rivals = service.report(week["ws"], 7, now=NOW), service.report(rival_ws, 7, now=NOW)
    # Theirs: first responses 45 60 120 300 600 and the late one: (120 + 300) / 2 = 210;
    # resolutions c1 c3 3600, c5 1800: 3600.
    assert figures(rivals.total) == (6, 6, 210, 3, 3600)
    assert [r.label for r in rivals.by_site] == ["Rival shop"]
    # Ours: the hand-computed week, day by day, as before.
    assert figures(ours.total) == (7, 6, 90, 4, 3600)
    assert [(r.label, figures(r)) for r in ours.by_day] == [
        (r.label, figures(r)) for r in ours_before.by_day]
    assert [(r.label, figures(r)) for r in ours.by_agent] == [
        ("Olive Owner", (3, 3, 120, 3, 3600)), ("Andy Agent", (2, 2, 53, 0, None)),
        ("Former agent", (1, 1, 300, 1, 1800)), ("No reply yet", (1, 0, None, 0, None))]


@pytest.mark.sqlite_only("a second database file in the same process; the PostgreSQL pass "
                         "runs every app on one database")
def test_a_day_kept_for_one_database_is_never_shown_from_another(app, app_config, tmp_path, week):
    """Another database (a test's own, a restored copy) with the same workspace id, made at
    the same moment, with the same days, counts and stamps, but Andy's reply to c2 after 50 s
    instead of 45: its 19th is its own."""
    with connection():
        assert on(service.report(week["ws"], 7, now=NOW), "2025-03-19") == (3, 2, 323, 1, 3600)
        born = Workspace.get_by_id(week["ws"]).created_at
    (tmp_path / "other").mkdir()
    other = build_app({**app_config, "DATA_DIR": tmp_path / "other"})
    owner = make_user(other)
    other_ws = workspace_id_of(owner.email)
    assert other_ws == week["ws"]
    shop = make_site(other, other_ws, name="Shop")
    blog = make_site(other, other_ws, name="Blog", origins="https://blog.example.com")
    with connection():
        Workspace.update(timezone=ZONE, created_at=born).where(Workspace.id == other_ws).execute()
        made = build(other_ws, shop, blog, owner.id, owner.id)
        Message.update(created_at=at(18, "23:30:50")).where(
            (Message.conversation == made["c2"].id) & (Message.sender == A)).execute()
        rep = service.report(other_ws, 7, now=NOW)
    assert on(rep, "2025-03-19") == (3, 2, 325, 1, 3600)  # (50 + 600) / 2


def test_the_median_of_days_put_together_is_the_median_of_all_their_times():
    """Medians over a period are taken from each day's sorted times without putting them
    together: the same as sorting them all (odd and even counts, equal middles, one day)."""
    import random

    rng = random.Random(7)
    for _ in range(500):
        runs = [sorted(rng.choice((rng.randrange(5), rng.randrange(10_000)))
                       for _ in range(rng.randrange(6))) for _ in range(rng.randrange(1, 6))]
        values = sorted(v for run in runs for v in run)
        n = len(values)
        expected = None if not n else values[n // 2] if n % 2 else int(
            (values[n // 2 - 1] + values[n // 2]) / 2 + 0.5)
        assert service.median_seconds(runs) == expected, runs


def test_a_day_patched_with_its_changed_facts_equals_the_day_made_from_all_of_them():
    """A kept day brought up to date with the facts written since (new conversations, changed
    times, repliers, sites and labels) has the figures of the day made again from all its
    facts, and the day it was made from is left as it was."""
    import random

    rng = random.Random(11)
    none = service.NONE

    def fact(cid):
        first = rng.choice((none, rng.randrange(1, 50)))
        return (cid, rng.choice((1, 2)), first, rng.choice((none, 7, 8)) if first != none else none,
                rng.choice((none, rng.randrange(100, 150))))

    def shape(day):
        def groups(table):
            return {k: (g.count, list(g.firsts), list(g.resolutions)) for k, g in table.items() if g.count}
        return (day.count, list(day.cids), list(day.sites), list(day.firsts), list(day.repliers),
                list(day.resolutions), day.labels, groups({"all": day.total}), groups(day.by_site),
                groups(day.by_agent), groups(day.by_label))

    for _ in range(200):
        facts = {cid: fact(cid) for cid in rng.sample(range(1, 40), rng.randrange(0, 12))}
        labels = {cid: tuple(rng.sample(("a", "b"), rng.randrange(3))) for cid in facts}
        old = service.Day.made(list(facts.values()), labels, len(facts), 1)
        kept = shape(old)
        changed = [fact(cid) for cid in rng.sample(range(1, 45), rng.randrange(0, 8))]
        new_labels = {f[0]: tuple(rng.sample(("a", "b", "c"), rng.randrange(4))) for f in changed}
        everything = facts | {f[0]: f for f in changed}
        patched = old.patched(changed, new_labels, len(everything), 2)
        assert shape(old) == kept
        assert shape(patched) == shape(service.Day.made(
            list(everything.values()), labels | new_labels, len(everything), 2))
        # A day whose count says some of its facts are gone is read again whole.
        if everything:
            assert old.patched(changed, new_labels, len(everything) - 1, 2) is None


# --- the page and its downloads ----------------------------------------------------------------


class Tables(HTMLParser):
    """Each <table>'s rows as lists of cell texts, in order."""

    def __init__(self, html: str):
        super().__init__()
        self.tables, self._row, self._cell = [], None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("th", "td") and self._row is not None:
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None


@pytest.fixture
def this_week(app, user, ws, agent):
    """The hand-made week moved to end today, for the pages (which read the clock)."""
    shift = timedelta(days=(utcnow().date() - NOW.date()).days)
    shop = make_site(app, ws, name="Shop")
    blog = make_site(app, ws, name="=HYPERLINK(\"http://evil.example\")")
    with connection():
        Workspace.update(timezone=ZONE).where(Workspace.id == ws).execute()
        made = build(ws, shop, blog, user.id, agent["user"].id, shift)
        label = Label.create(workspace=ws, name="VIP", folded="vip", colour="#aa0000")
        ConversationLabel.create(conversation=made["c1"].id, label=label)
    return ws


def as_shown(csv_row: list[str]) -> list[str]:
    """A CSV row as the page's table shows it: durations in words, names as given."""
    label, n, answered, first, resolved, resolution = csv_row
    label = label[1:] if label.startswith("'=") else label
    words = [service.duration(int(v) if v else None) for v in (first, resolution)]
    return [label, n, answered, words[0], resolved, words[1]]


@pytest.mark.parametrize("days", ["7", "30", "90"])
def test_each_csv_download_holds_the_rows_of_its_table_on_the_page(auth, this_week, days):
    """The page's four tables (per day, site, agent, label) and the four CSV files hold the
    same rows and numbers, whatever the period."""
    page = auth.get(f"/dashboard/reports?days={days}")
    assert page.status_code == 200
    tables = Tables(page.get_data(as_text=True)).tables
    assert len(tables) == 4
    for by, table in zip(service.BREAKDOWNS, tables, strict=True):
        answer = auth.get(f"/dashboard/reports.csv?days={days}&by={by}")
        assert answer.status_code == 200 and answer.mimetype == "text/csv"
        assert "attachment" in answer.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
        assert rows[0][1:] == service.CSV_HEADER
        assert [as_shown(r) for r in rows[1:]] == table[1:], by
    assert len(tables[0]) == 1 + int(days)


def test_a_name_that_looks_like_a_formula_is_never_one_in_the_csv(auth, this_week):
    """A site named "=HYPERLINK(...)" starts with an apostrophe in the download, so that a
    spreadsheet shows it as text instead of running it."""
    answer = auth.get("/dashboard/reports.csv?days=30&by=site")
    labels = [r[0] for r in csv.reader(io.StringIO(answer.get_data(as_text=True)))][1:]
    assert labels == ["'=HYPERLINK(\"http://evil.example\")", "Shop"]


def test_the_page_draws_the_bars_and_names_the_time_zone(auth, this_week):
    """Four SVG charts, each named by its title, with one bar per day (for the days that had
    conversations) and per site, agent and label; no inline style anywhere (the CSP forbids
    it)."""
    html = auth.get("/dashboard/reports?days=7").get_data(as_text=True)
    assert html.count("<svg") == 4 and "style=" not in html
    assert "Conversations per day over the last 7 days" in html
    assert html.count('class="bar-ok"') == 4  # the 17th, 18th, 19th and 20th
    assert html.count('class="bar"') == 2 + 4 + 1  # two sites; Olive, Andy, former, no reply; VIP
    assert f"by day in {ZONE}" in html
    assert 'href="/dashboard/reports?days=7" hx-get' in html and 'aria-current="page">Last 7 days' in html


def test_the_period_links_swap_in_the_report_alone_for_htmx(auth, this_week):
    """An htmx request gets the report's fragment (no layout), a plain one the whole page."""
    fragment = auth.get("/dashboard/reports?days=90", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="report"')
    assert "<html" not in body and "sidenav" not in body
    assert "<html" in auth.get("/dashboard/reports?days=90").get_data(as_text=True)


def test_resolving_a_conversation_in_the_inbox_counts_as_a_resolution(auth, conversation):
    """Marked resolved through the dashboard, a conversation is resolved in the report with its
    time from start to that moment; reopened, it is not."""
    url = f"/dashboard/conversations/{conversation.id}/status"
    assert auth.post_form(url, {"status": "resolved"}).status_code in (200, 303)
    with connection():
        rep = service.report(conversation.workspace_id, 7)
    assert rep.total.resolved == 1 and 0 <= rep.total.median_resolution < 60
    assert auth.post_form(url, {"status": "open"}).status_code in (200, 303)
    with connection():
        assert service.report(conversation.workspace_id, 7).total.resolved == 0


def test_an_agent_sees_the_reports_and_a_stranger_is_sent_to_log_in(app, client, this_week, agent):
    """Every member of the workspace, owner or agent, may read its reports; nobody else."""
    assert agent["client"].get("/dashboard/reports").status_code == 200
    assert agent["client"].get("/dashboard/reports.csv?by=agent").status_code == 200
    for url in ("/dashboard/reports", "/dashboard/reports.csv?by=day"):
        answer = client.get(url)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_a_member_of_another_workspace_sees_only_theirs(app, this_week):
    """Signed in to their own workspace, a rival reads no conversation of the owner's."""
    make_user(app, email="rival@example.com", name="Rita Rival")
    rival = Client(app.test_client())
    log_in(rival, "rival@example.com")
    answer = rival.get("/dashboard/reports.csv?days=90&by=site")
    assert [r[:2] for r in csv.reader(io.StringIO(answer.get_data(as_text=True)))][1:] == []
    html = rival.get("/dashboard/reports?days=90").get_data(as_text=True)
    assert "Shop" not in html and "Andy Agent" not in html


BAD_DAYS = ["abc", "-1", "0", "1", "31", "1e3", "30.0", "", "٣٠", "99999999999999999999",
            "<script>alert(1)</script>"]


@pytest.mark.parametrize("days", BAD_DAYS)
@pytest.mark.parametrize("path", ["/dashboard/reports", "/dashboard/reports.csv?by=day"])
def test_a_period_no_report_has_is_refused_with_a_message(auth, this_week, path, days):
    """400 with the choices named, for the page and the download alike; never a 500 and
    never the input echoed as markup."""
    sep = "&" if "?" in path else "?"
    answer = auth.get(f"{path}{sep}days={days}")
    body = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Choose a period of 7, 30 or 90 days." in body
    assert "<script>alert(1)" not in body
    assert "Last 30 days" in body  # the way on


@pytest.mark.parametrize("by", ["<script>alert(1)</script>", "", "labels", "DAY", "site "])
def test_a_table_no_report_has_is_refused_with_a_message(auth, this_week, by):
    answer = auth.get(f"/dashboard/reports.csv?days=30&by={by}")
    body = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Choose a table to download" in body and "<script>alert(1)" not in body


def test_a_download_without_a_table_named_is_refused(auth, this_week):
    assert auth.get("/dashboard/reports.csv?days=30").status_code == 400


def test_an_empty_workspace_has_a_report_of_zeros(auth, ws):
    """No site, no conversation: the page still answers, with zeros and no chart of sites."""
    html = auth.get("/dashboard/reports").get_data(as_text=True)
    assert "No sites yet." in html
    with connection():
        rep = service.report(ws, 30)
        assert Membership.select().where(Membership.workspace == ws).count() == 1
    assert figures(rep.total) == (0, 0, None, 0, None) and len(rep.by_day) == 30
