"""Usage insight: whole page views counted per route and day, with nothing that identifies
anyone; nobody counted after they object, no restricted workspace ever; no cookie or storage
for it; staff see the charts, anyone else finds nothing."""

import re

import pytest
from flask import g

from app.db import connection, database, utcnow
from app.insight import service
from app.insight.models import InsightCount
from tests.chat_fixtures import ws_fixture  # noqa: F401  (fixture)
from tests.conftest import Client, log_in, make_user, staff_client

PROBE_AGENT = "InsightProbe/9.9 (unmistakable agent string)"
SECOND = "second@example.com"


@pytest.fixture(autouse=True)
def _fresh_counters(app):
    """Counts start from nothing: none from an earlier test's app in this process."""
    service.tally.take()
    with app.app_context(), connection():
        InsightCount.delete().execute()
    yield


def counts(kind=service.PAGE) -> dict:
    """Today's counters of `kind` once this process's counts are written (but the sign-up the
    fixtures' owner made, counted as any sign-up is)."""
    service.flush()
    today = utcnow().date()
    with connection():
        return {row.name: row.count for row in
                InsightCount.select().where((InsightCount.kind == kind) & (InsightCount.day == today))
                if row.name != "account.signed_up"}


def test_a_page_view_is_counted_under_its_endpoint_name_and_day(app, auth):
    before = counts()
    assert auth.get("/dashboard/inbox").status_code == 200
    assert auth.get("/dashboard/inbox").status_code == 200
    assert auth.get("/pricing").status_code == 200
    after = counts()
    assert after.get("chat.inbox", 0) - before.get("chat.inbox", 0) == 2
    assert after.get("public.pricing", 0) - before.get("public.pricing", 0) == 1
    with connection():
        days = {row.day for row in InsightCount.select()}
    assert days == {utcnow().date()}


def test_fragments_redirects_errors_and_static_files_are_not_page_views(app, auth):
    before = counts()
    auth.get("/dashboard/inbox", headers={"HX-Request": "true"})  # a part of a page
    auth.get("/dashboard/conversations/999999")  # 404
    auth.get("/dashboard")  # a redirect to /dashboard/
    auth.get("/static/css/app.css").close()
    auth.get("/healthz")
    assert counts() == before


def test_the_counters_hold_no_ip_user_agent_user_workspace_or_url_with_ids(app, client, user, ws):
    second = Client(app.test_client())
    make_user(app, email=SECOND, name="Sam Second")
    log_in(client)
    log_in(second, SECOND)
    headers = {"User-Agent": PROBE_AGENT}
    for c in (client, second):
        c.get("/dashboard/inbox?status=open&q=refund", headers=headers)
        c.get("/dashboard/settings", headers=headers)
        c.get("/dashboard/automations", headers=headers)
    Client(app.test_client()).get("/pricing", headers=headers,
                                  environ_base={"REMOTE_ADDR": "203.0.113.77"})
    service.flush()

    with connection():
        columns = sorted(c.name for c in database.get_columns("insight_count"))
        rows = database.execute_sql('SELECT "day", "kind", "name", "count" FROM "insight_count"').fetchall()
    # A day, a kind, a name and a number: no column where who, from where or with what could go.
    assert columns == ["count", "day", "kind", "name"]
    assert len(rows) >= 4
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    text = " ".join(map(str, rows))
    for trace in (PROBE_AGENT, "InsightProbe", "127.0.0.1", "203.0.113.77", "owner@example.com",
                  SECOND, "Olive", "Sam", "/dashboard", "refund", "status="):
        assert trace not in text
    for day, kind, name, count in rows:
        assert str(day) == utcnow().date().isoformat()
        assert kind in (service.PAGE, service.EVENT)
        assert name in endpoints | set(service.EVENTS)
        assert not re.search(r"\d", name), f"{name} holds a number (an id?)"
        assert isinstance(count, int)


def test_after_an_objection_the_persons_visits_are_not_counted_and_are_again_after_withdrawing(
        app, auth):
    auth.get("/dashboard/settings")
    assert counts().get("accounts.settings") == 1

    page = auth.get("/dashboard/settings").get_data(as_text=True)
    assert "Stop counting my visits" in page
    answer = auth.post_form("/dashboard/settings/insight/objection")
    assert answer.status_code == 303
    page = auth.get("/dashboard/settings").get_data(as_text=True)
    assert "Count my visits again" in page and "Your visits are not counted." in page
    auth.get("/dashboard/inbox")
    auth.get("/pricing")
    seen = counts()
    assert seen.get("accounts.settings") == 2  # the one view before the objection
    assert "chat.inbox" not in seen and "public.pricing" not in seen

    # An htmx click answers with the section itself.
    answer = auth.post_form("/dashboard/settings/insight/objection/withdraw", htmx=True)
    assert answer.status_code == 200
    assert "Your visits are counted again." in answer.get_data(as_text=True)
    auth.get("/dashboard/inbox")
    assert counts().get("chat.inbox") == 1


def test_an_objecting_persons_feature_events_are_not_counted(app, auth):
    with app.test_request_context():
        g.user, g.membership = None, None
        service.count("chat.reply_sent")
    assert counts(service.EVENT) == {"chat.reply_sent": 1}
    auth.post_form("/dashboard/settings/insight/objection")
    from app.accounts.models import User

    with app.test_request_context(), connection():
        g.user, g.membership = User.by_email("owner@example.com"), None
        service.count("chat.reply_sent")
    assert counts(service.EVENT) == {"chat.reply_sent": 1}


def test_an_event_outside_a_request_is_not_counted_for_an_objector_or_a_restricted_workspace(
        app, auth):
    from app.accounts.models import Membership, User

    auth.post_form("/dashboard/settings/insight/objection")
    with connection():
        owner = User.by_email("owner@example.com")
        workspace = Membership.get(Membership.user == owner).workspace
    service.count("chat.reply_sent", workspace=workspace, user_id=owner.id)
    workspace.processing_restricted = True  # the data-rights work's flag, set on the object
    service.count("automation.run", workspace=workspace)
    assert counts(service.EVENT) == {}
    workspace.processing_restricted = False
    service.count("automation.run", workspace=workspace)
    assert counts(service.EVENT) == {"automation.run": 1}


def test_a_made_up_event_name_is_refused():
    with pytest.raises(ValueError):
        service.count("chat.reply_sent_to_olive@example.com")


def test_a_restricted_workspaces_member_is_not_counted(app, client, user):
    # The data-rights work adds `processing_restricted` to Workspace; until then the flag is
    # set here on the workspace object the session loaded, which is what counted() consults.
    restricted = {"owner@example.com"}

    @app.before_request
    def _restrict():
        if g.get("membership") is not None and g.user.email in restricted:
            g.membership.workspace.processing_restricted = True

    second = Client(app.test_client())
    make_user(app, email=SECOND, name="Sam Second")
    log_in(client)
    log_in(second, SECOND)
    client.get("/dashboard/inbox")
    client.get("/dashboard/settings")
    seen = counts()
    assert "chat.inbox" not in seen and "accounts.settings" not in seen
    second.get("/dashboard/inbox")
    assert counts()["chat.inbox"] == 1

    restricted.clear()
    client.get("/dashboard/inbox")
    assert counts()["chat.inbox"] == 2


def cookies(app, response) -> dict:
    """Each cookie the response sets: its attributes, and the keys of what it holds."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        value, _, attributes = rest.partition(";")
        keys = None
        if name == app.config["SESSION_COOKIE_NAME"]:
            keys = sorted(app.session_interface.get_signing_serializer(app).loads(value))
        kept = sorted(a.strip() for a in attributes.split(";") if not a.strip().startswith("Expires"))
        found[name] = (keys, kept)
    return found


def test_counting_sets_no_cookie_and_no_storage(app, auth):
    # A visitor: the only cookie is the session's, holding the form token and nothing else.
    visitor = Client(app.test_client())
    counted = visitor.get("/pricing")
    assert counts().get("public.pricing") == 1
    assert cookies(app, counted) == {app.config["SESSION_COOKIE_NAME"]: (
        ["csrf"], ["HttpOnly", "Path=/", "SameSite=Lax"])}
    html = counted.get_data(as_text=True)
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert all(src.startswith("/static/") for src in scripts), scripts  # no third party
    assert "localStorage" not in html and "sessionStorage" not in html

    # A member: the same cookies, holding the same keys, whether the page is counted or not.
    with_insight = auth.get("/dashboard/inbox")
    auth.post_form("/dashboard/settings/insight/objection")
    without_insight = auth.get("/dashboard/inbox")
    assert counts().get("chat.inbox") == 1
    assert cookies(app, with_insight) == cookies(app, without_insight)
    for response in (counted, with_insight, without_insight):
        assert "Clear-Site-Data" not in response.headers


def test_staff_see_the_charts_and_the_top_routes(app, auth):
    auth.get("/dashboard/inbox")
    auth.get("/dashboard/inbox")
    auth.get("/dashboard/settings")
    with app.test_request_context():
        g.user, g.membership = None, None
        service.count("site.created")
    service.flush()
    staff = staff_client(app)
    page = staff.get("/staff/insight")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("<svg") == 2
    assert "Page views per day over the last 30 days" in html
    rows = re.findall(r"<tr><th scope=\"row\"><code>([\w.]+)</code></th><td>(\d+)</td></tr>", html)
    # (The test client reads a CSRF token from /privacy before each post: it is counted too.)
    assert ("chat.inbox", "2") in rows and ("accounts.settings", "1") in rows
    assert [int(n) for _, n in rows] == sorted((int(n) for _, n in rows), reverse=True)
    assert "Sites added" in html
    # The staff page itself is not a page of the product's users.
    assert "insight.staff_charts" not in counts()


def test_anyone_but_staff_gets_404_for_the_charts(app, client, user):
    assert client.get("/staff/insight").status_code == 404
    log_in(client)
    assert client.get("/staff/insight").status_code == 404


def test_old_totals_are_dropped_after_the_keeping_period(app):
    today = utcnow().date()
    from datetime import timedelta

    with connection():
        InsightCount.create(day=today - timedelta(days=service.KEEP_DAYS + 1), kind="page",
                            name="chat.inbox", count=3)
        InsightCount.create(day=today - timedelta(days=service.KEEP_DAYS), kind="page",
                            name="chat.inbox", count=4)
        assert service.purge_old(today) == 1
        assert [r.count for r in InsightCount.select()] == [4]
