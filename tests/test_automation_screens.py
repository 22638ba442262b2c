"""The customer's automation screens: list, detail, runs with filters, run log, chart, access
log; owner-only actions; another workspace's ids are 404."""

import re
from datetime import timedelta

import pytest

from app.accounts.models import Membership, User, Workspace
from app.automations import service, vault
from app.automations.models import Automation, AutomationRun
from app.db import connection, utcnow
from app.staff.models import AuditEntry
from tests.conftest import Client, db_state, log_in, make_user

TOKEN = "crm-token-5e4d3c2b1a09f8e7-qrst"


def workspace_of(email="owner@example.com") -> Workspace:
    with connection():
        return Membership.get(Membership.user == User.by_email(email)).workspace


def create(app, ws_id, name="Lead mail", flow="email", trigger="manual", **kw):
    config = kw.pop("config", None) or {"to": "sales@example.com", "subject": "New lead",
                                        "body": "{{ event.visitor_name }} wrote."}
    with app.test_request_context(), connection():
        return service.create_automation(ws_id, name=name, flow=flow, config=config,
                                         trigger=trigger, **kw)


def add_run(automation, status, when=None, trigger="manual", **kw):
    with connection():
        return AutomationRun.create(automation=automation, workspace=automation.workspace_id,
                                    trigger=trigger, status=status,
                                    created_at=when or utcnow(), **kw)


@pytest.fixture
def ws(auth):
    return workspace_of()


@pytest.fixture
def stranger(app):
    """Someone with a workspace of their own, logged in."""
    make_user(app, email="stranger@example.com", name="Stranger")
    client = Client(app.test_client())
    log_in(client, email="stranger@example.com")
    return client


@pytest.fixture
def agent(app, ws):
    """A member of the owner's workspace who is not an owner."""
    make_user(app, email="agent@example.com", name="Agent")
    with connection():
        agent_user = User.by_email("agent@example.com")
        Membership.create(workspace=ws, user=agent_user, role=Membership.AGENT)
    client = Client(app.test_client())
    log_in(client, email="agent@example.com")
    with client.session_transaction() as s:
        s["ws"] = ws.id
    return client


def test_the_list_says_so_when_empty_and_the_nav_leads_to_it(auth, ws):
    page = auth.get("/dashboard/automations").get_data(as_text=True)
    assert "No automations yet." in page
    assert 'href="/dashboard/automations" aria-current="page"' in page
    assert 'href="/dashboard/access-log"' in page
    assert auth.get("/dashboard/area/automations").status_code == 404  # no longer "coming"


def test_the_list_shows_flow_trigger_status_last_and_next_run(app, auth, ws):
    mail = create(app, ws.id)
    daily = create(app, ws.id, name="Daily report", trigger="schedule", cron="0 9 * * *")
    broken = create(app, ws.id, name="Broken hook", trigger="chat",
                    chat_event="visitor_left_email")
    add_run(mail, "succeeded")
    add_run(broken, "failed", error="CRM answered 500")
    page = auth.get("/dashboard/automations").get_data(as_text=True)
    rows = {name: re.search(rf"<tr id=\"automation-\d+\">\s*<td><a[^>]*>{name}</a>.*?</tr>", page, re.S)
            .group(0) for name in ("Lead mail", "Daily report", "Broken hook")}
    assert "E-mail" in rows["Lead mail"] and "Run now only" in rows["Lead mail"]
    assert "Active" in rows["Lead mail"] and "succeeded" in rows["Lead mail"]
    assert "Schedule: 0 9 * * *" in rows["Daily report"] and "never" in rows["Daily report"]
    with connection():
        nxt = Automation.get_by_id(daily.id).next_run_at
    assert nxt.strftime("%Y-%m-%d %H:%M") in rows["Daily report"]
    assert "Chat: Visitor left an e-mail" in rows["Broken hook"]
    assert "Failing" in rows["Broken hook"]


def test_detail_shows_settings_read_only_with_credentials_masked(app, auth, ws):
    with app.app_context(), connection():
        cred = vault.store(ws.id, "Pipedrive", "CRM token", "api_token", {"token": TOKEN})
    a = create(app, ws.id, name="Leads to CRM", flow="chat_lead_crm", trigger="chat",
               chat_event="visitor_left_email",
               config={"base_url": "https://crm.example.com/api", "credential": str(cred.id)})
    page = auth.get(f"/dashboard/automations/{a.id}").get_data(as_text=True)
    assert "Pipedrive · CRM token (••••qrst)" in page
    assert "https://crm.example.com/api" in page
    assert TOKEN not in page and TOKEN[:-4] not in page
    assert '<form id="automation-form"' not in page  # nothing to edit here


def test_the_webhook_address_is_shown_to_owners_only(app, auth, ws, agent):
    a = create(app, ws.id, name="From the shop", trigger="webhook")
    with connection():
        secret = Automation.get_by_id(a.id).webhook_secret
    assert secret
    assert f"http://localhost/hooks/{secret}" in auth.get(f"/dashboard/automations/{a.id}").get_data(as_text=True)
    page = agent.get(f"/dashboard/automations/{a.id}")
    assert page.status_code == 200
    assert secret not in page.get_data(as_text=True)


def test_owners_pause_resume_and_pause_all(app, auth, ws):
    a = create(app, ws.id, trigger="schedule", cron="*/5 * * * *")
    assert auth.post_form(f"/dashboard/automations/{a.id}/pause").status_code == 303
    with connection():
        assert Automation.get_by_id(a.id).paused
    assert "Paused" in auth.get("/dashboard/automations").get_data(as_text=True)
    assert auth.post_form(f"/dashboard/automations/{a.id}/resume").status_code == 303
    with connection():
        assert not Automation.get_by_id(a.id).paused
    response = auth.post_form("/dashboard/automations/pause-all", htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/dashboard/automations"
    with connection():
        assert Workspace.get_by_id(ws.id).automations_paused
        assert Automation.get_by_id(a.id).next_run_at is None
    page = auth.get("/dashboard/automations").get_data(as_text=True)
    assert "All automations are paused." in page and "Resume all automations" in page
    auth.post_form("/dashboard/automations/resume-all")
    with connection():
        assert not Workspace.get_by_id(ws.id).automations_paused
        assert Automation.get_by_id(a.id).next_run_at is not None


def test_agents_see_automations_but_cannot_change_or_run_them(app, auth, ws, agent):
    a = create(app, ws.id)
    assert agent.get("/dashboard/automations").status_code == 200
    assert "Pause all" not in agent.get("/dashboard/automations").get_data(as_text=True)
    before = db_state(Automation, AutomationRun, Workspace)
    for url in (f"/dashboard/automations/{a.id}/pause", f"/dashboard/automations/{a.id}/run",
                "/dashboard/automations/pause-all"):
        assert agent.post_form(url).status_code == 403, url
    assert db_state(Automation, AutomationRun, Workspace) == before


def test_run_now_runs_and_the_run_page_shows_its_log(app, auth, ws, smtp):
    a = create(app, ws.id)
    response = auth.post_form(f"/dashboard/automations/{a.id}/run")
    assert response.status_code == 303
    run_url = response.headers["Location"]
    with connection():
        run = AutomationRun.get(AutomationRun.automation == a.id)
    assert run_url.endswith(f"/dashboard/automations/runs/{run.id}")
    assert run.status == "succeeded", run.log
    page = auth.get(run_url).get_data(as_text=True)
    assert f"Run #{run.id} of Lead mail" in page
    assert '<pre class="log"' in page
    assert 'hx-trigger="every 2s"' not in page  # finished: no more refreshing
    assert smtp.to("sales@example.com")


def test_a_paused_automation_is_not_run_now(app, auth, ws):
    a = create(app, ws.id)
    auth.post_form(f"/dashboard/automations/{a.id}/pause")
    before = db_state(AutomationRun)
    response = auth.post_form(f"/dashboard/automations/{a.id}/run")
    assert response.status_code == 422
    assert "paused" in response.get_data(as_text=True)
    assert db_state(AutomationRun) == before


def test_a_queued_run_page_refreshes_itself_with_its_fragment(app, auth, ws):
    a = create(app, ws.id)
    run = add_run(a, "queued")
    page = auth.get(f"/dashboard/automations/runs/{run.id}").get_data(as_text=True)
    assert f'hx-get="/dashboard/automations/runs/{run.id}" hx-trigger="every 2s"' in page
    fragment = auth.get(f"/dashboard/automations/runs/{run.id}", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith("<section id=\"run\"") and "<html" not in body


def test_runs_filter_by_status_and_trigger_and_page(app, auth, ws):
    a = create(app, ws.id)
    b = create(app, ws.id, name="Other")
    for i in range(30):
        add_run(a, "succeeded", when=utcnow() - timedelta(minutes=i))
    fail = add_run(a, "failed", trigger="webhook")
    add_run(b, "failed")
    page = auth.get("/dashboard/automations/runs?status=failed").get_data(as_text=True)
    assert page.count('class="status-failed"') == 2
    page = auth.get("/dashboard/automations/runs?status=failed&trigger=webhook").get_data(as_text=True)
    assert f"#{fail.id}</a>" in page and page.count('class="status-failed"') == 1
    page = auth.get(f"/dashboard/automations/runs?automation={b.id}").get_data(as_text=True)
    assert "Runs of Other" in page and page.count("<tr>") == 2  # header + one run
    first = auth.get("/dashboard/automations/runs").get_data(as_text=True)
    assert first.count('class="status-') == 25 and "Older runs" in first
    second = auth.get("/dashboard/automations/runs?page=2").get_data(as_text=True)
    assert second.count('class="status-') == 7 and "Newer runs" in second
    htmx = auth.get("/dashboard/automations/runs?status=failed", headers={"HX-Request": "true"})
    assert htmx.get_data(as_text=True).lstrip().startswith('<section id="runs"')
    # An unknown filter value means "any", not an error.
    assert auth.get("/dashboard/automations/runs?status=bogus").status_code == 200


def test_the_chart_draws_thirty_days_with_a_text_table(app, auth, ws):
    a = create(app, ws.id)
    for _ in range(3):
        add_run(a, "succeeded")
    add_run(a, "failed")
    add_run(a, "succeeded", when=utcnow() - timedelta(days=2))
    add_run(a, "failed", when=utcnow() - timedelta(days=40))  # outside the window
    page = auth.get("/dashboard/automations").get_data(as_text=True)
    svg = re.search(r"<svg class=\"chart\".*?</svg>", page, re.S).group(0)
    assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
    assert "4 runs succeeded and 1 failed in total" in svg
    assert svg.count('class="bar-ok"') == 2 and svg.count('class="bar-failed"') == 1
    table = re.search(r"<details>.*?</details>", page, re.S).group(0)
    assert table.count("<th scope=\"row\">") == 30
    today = utcnow().date().isoformat()
    assert f'<th scope="row">{today}</th><td>3</td><td>1</td>' in table
    detail = auth.get(f"/dashboard/automations/{a.id}").get_data(as_text=True)
    assert "4 succeeded, 1 failed" in detail


def test_another_workspaces_automations_and_runs_are_404(app, auth, ws, stranger):
    a = create(app, ws.id)
    run = add_run(a, "failed")
    before = db_state(Automation, AutomationRun, Workspace)
    for url in (f"/dashboard/automations/{a.id}", f"/dashboard/automations/runs/{run.id}",
                f"/dashboard/automations/runs?automation={a.id}"):
        assert stranger.get(url).status_code == 404, url
    for url in (f"/dashboard/automations/{a.id}/pause", f"/dashboard/automations/{a.id}/run"):
        assert stranger.post_form(url).status_code == 404, url
    assert db_state(Automation, AutomationRun, Workspace) == before
    assert "Lead mail" not in stranger.get("/dashboard/automations").get_data(as_text=True)


def test_the_access_log_lists_this_workspaces_entries_only(app, auth, ws, stranger):
    other = workspace_of("stranger@example.com")
    with connection():
        AuditEntry.create(workspace_id=ws, staff_email="ada@lumnar.example",
                          action="viewed automation 'Lead mail'")
        AuditEntry.create(workspace_id=other, staff_email="bob@lumnar.example", action="secret look")
    page = auth.get("/dashboard/access-log").get_data(as_text=True)
    assert "ada@lumnar.example" in page and "viewed automation &#39;Lead mail&#39;" in page
    assert "bob@lumnar.example" not in page
    theirs = stranger.get("/dashboard/access-log").get_data(as_text=True)
    assert "bob@lumnar.example" in theirs and "ada@lumnar.example" not in theirs
    with connection():
        AuditEntry.delete().where(AuditEntry.workspace_id == other).execute()
    assert "Nobody at Lumnar has looked" in stranger.get("/dashboard/access-log").get_data(as_text=True)


# --- the workspace's automation settings ------------------------------------------------------


def test_owners_set_the_time_zone_and_a_schedule_moves_with_it(app, auth, ws):
    automation = create(app, ws.id, trigger="schedule", cron="0 9 * * *")
    with connection():
        before = Automation.get_by_id(automation.id).next_run_at
    response = auth.post_form("/dashboard/automations/settings",
                              {"timezone": "Asia/Tokyo", "run_log_days": "30"})
    assert response.status_code == 303
    with connection():
        saved = Workspace.get_by_id(ws.id)
        after = Automation.get_by_id(automation.id).next_run_at
    assert (saved.timezone, saved.run_log_days) == ("Asia/Tokyo", 30)
    assert after.hour == 0 and after != before  # 09:00 in Tokyo is midnight UTC
    assert "Times are in Asia/Tokyo" in auth.get("/dashboard/automations").get_data(as_text=True)


@pytest.mark.parametrize("fields, says", [
    ({"timezone": "Mars/Olympus", "run_log_days": "14"}, "Choose a time zone from the list"),
    ({"timezone": "UTC", "run_log_days": "0"}, "from 1 to 365"),
    ({"timezone": "UTC", "run_log_days": "two weeks"}, "from 1 to 365"),
])
def test_bad_settings_are_refused_beside_the_field_and_nothing_changes(auth, ws, fields, says):
    before = db_state(Workspace, Automation)
    response = auth.post_form("/dashboard/automations/settings", fields, htmx=True)
    assert response.status_code == 422
    assert says in response.get_data(as_text=True)
    assert db_state(Workspace, Automation) == before


def test_only_owners_change_the_settings(agent, ws):
    before = db_state(Workspace)
    response = agent.post_form("/dashboard/automations/settings",
                               {"timezone": "Asia/Tokyo", "run_log_days": "30"})
    assert response.status_code == 403
    assert db_state(Workspace) == before
    assert 'id="automation-settings"' not in agent.get("/dashboard/automations").get_data(as_text=True)
