"""Automation runs: set-up checks, the schedule in the workspace's zone, the idempotent ticker,
missed slots, retries with backoff and the owner's e-mail, pause, chat events, inbound
webhooks, redacted and capped logs, retention and the runs-per-day figures.

Huey runs inline (immediate mode); a retry waits in Huey's schedule, and the tests drive the
clock by taking due tasks from that schedule, never by sleeping. Outgoing requests go to a
real HTTP server on loopback; e-mail to a real SMTP server (aiosmtpd)."""

import json
import threading
from datetime import date, datetime, timedelta

import pytest
from peewee import fn

from app.accounts.models import Workspace
from app.automations import service, vault
from app.automations.flows import registry
from app.automations.models import Automation, AutomationRun
from app.db import connection, database, utcnow
from app.errors import RuleError
from jobs import huey
from tests.chat_fixtures import OTHER_EMAIL, workspace_id_of
from tests.conftest import db_state, make_user
from tests.mailcatcher import text_of

pytestmark = pytest.mark.config(AUTOMATIONS_ALLOW_PRIVATE=True)

SECRET_TOKEN = "tok_live_Zq8Xw3Vb7Ny2Lm5Kp9Rt"


@pytest.fixture
def ws(app, user):
    return workspace_id_of(user.email)


@pytest.fixture
def ctx(app, ws):
    """The service needs the app (settings, mail) and an open connection."""
    with app.app_context(), connection():
        yield app


def http_config(url, body='{"text": {{ event.text|tojson }}}', **extra):
    return {"method": "POST", "url": url, "body": body, "expected_status": "2xx", **extra}


def make(ws, url, trigger="manual", **kwargs):
    kwargs.setdefault("config", http_config(url))
    return service.create_automation(ws, name=kwargs.pop("name", "Ping"), flow="http_request",
                                     trigger=trigger, **kwargs)


def run_of(run_id) -> AutomationRun:
    return AutomationRun.get_by_id(run_id)


def runs(automation) -> list[AutomationRun]:
    return list(AutomationRun.select().where(AutomationRun.automation == automation.id)
                .order_by(AutomationRun.id))


def fresh(automation) -> Automation:
    return Automation.get_by_id(automation.id)


def due_retries():
    """Take every retry waiting in Huey's schedule, as the consumer does when its time comes."""
    return huey.read_schedule(datetime(9999, 1, 1))


def failure_mails(smtp, user):
    return [m for m in smtp.to(user.email) if "failed" in m["Subject"]]


def set_zone(ws, tz_name):
    Workspace.update(timezone=tz_name).where(Workspace.id == ws).execute()


# --- the schedule ----------------------------------------------------------------------------


def test_a_slot_is_read_in_the_workspace_time_zone_summer_and_winter():
    winter = service.next_slot("0 9 * * *", "Europe/Paris", datetime(2025, 1, 10, 12, 0))
    summer = service.next_slot("0 9 * * *", "Europe/Paris", datetime(2025, 7, 10, 12, 0))
    assert winter == datetime(2025, 1, 11, 8, 0)  # UTC+1
    assert summer == datetime(2025, 7, 11, 7, 0)  # UTC+2
    assert service.next_slot("0 9 * * *", "UTC", datetime(2025, 1, 10, 9, 0)) == \
        datetime(2025, 1, 11, 9, 0)  # strictly after


def test_a_scheduled_automation_fires_in_its_slot_once(ctx, ws, endpoint):
    set_zone(ws, "America/New_York")
    automation = make(ws, endpoint.url, trigger="schedule", cron="30 9 * * *")
    slot = automation.next_run_at
    local = service._local(slot, "America/New_York")
    assert (local.hour, local.minute) == (9, 30)

    assert service.tick(slot - timedelta(seconds=1)) == 0
    assert endpoint.requests == []
    assert service.tick(slot + timedelta(seconds=5)) == 1
    assert len(endpoint.requests) == 1
    (run,) = runs(automation)
    assert (run.status, run.slot, run.trigger, run.attempts) == ("succeeded", slot, "schedule", 1)
    assert "Scheduled for" in run.log and "(America/New_York)" in run.log
    assert fresh(automation).next_run_at == slot + timedelta(days=1)

    # A second tick for the same moment (a restart, another consumer) finds nothing to do.
    assert service.tick(slot + timedelta(seconds=30)) == 0
    assert len(endpoint.requests) == 1


def test_a_stale_second_ticker_cannot_run_a_slot_twice(ctx, ws, endpoint):
    automation = make(ws, endpoint.url, trigger="schedule", cron="*/5 * * * *")
    slot = automation.next_run_at
    assert service.tick(slot) == 1
    # Another consumer read the automation before the first one moved next_run_at on: the
    # unique (automation, slot) refuses the same slot.
    Automation.update(next_run_at=slot).where(Automation.id == automation.id).execute()
    assert service.tick(slot) == 0
    assert len(runs(automation)) == 1 and len(endpoint.requests) == 1


def test_two_tickers_at_once_make_each_slot_once(app, ctx, ws, endpoint):
    automations = [make(ws, endpoint.url, trigger="schedule", cron="* * * * *", name=f"A{i}")
                   for i in range(30)]
    moment = max(a.next_run_at for a in automations)
    counts, errors = [], []

    def ticker():
        try:
            with app.app_context(), connection():  # its own connection, like another process
                counts.append(service.tick(moment))
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(counts) == 30
    assert AutomationRun.select().count() == 30
    assert len(endpoint.requests) == 30


def test_a_missed_slot_runs_once_late_and_says_so(ctx, ws, endpoint):
    automation = make(ws, endpoint.url, trigger="schedule", cron="0 * * * *")
    slot = automation.next_run_at
    assert service.tick(slot + timedelta(minutes=17)) == 1
    (run,) = runs(automation)
    assert run.slot == slot and run.status == "succeeded"
    assert "Late" in run.log and "17 min late" in run.log
    assert json.loads(run.payload)["late"] is True
    assert fresh(automation).next_run_at == slot + timedelta(hours=1)


def test_many_missed_slots_after_downtime_run_once_for_the_latest(ctx, ws, endpoint):
    automation = make(ws, endpoint.url, trigger="schedule", cron="0 * * * *")
    slot = automation.next_run_at
    assert service.tick(slot + timedelta(hours=3, minutes=10)) == 1
    (run,) = runs(automation)
    assert run.slot == slot + timedelta(hours=3)
    assert "4 scheduled slots" in run.log and "this one run stands for them" in run.log
    assert json.loads(run.payload)["missed_slots"] == 4
    assert len(endpoint.requests) == 1
    assert fresh(automation).next_run_at == slot + timedelta(hours=4)


# --- retries and the owner's e-mail ----------------------------------------------------------


def test_a_failing_run_retries_with_backoff_then_fails_and_mails_the_owner(ctx, ws, user,
                                                                          endpoint, smtp):
    endpoint.status = 500
    automation = make(ws, endpoint.url, max_attempts=3)
    run = service.run_now(automation)
    assert (run.status, run.attempts) == ("retrying", 1)
    base = ctx.config["AUTOMATIONS_RETRY_BASE_SECONDS"]
    for attempt in (1, 2):
        (task,) = due_retries()
        wait = (task.eta - utcnow()).total_seconds()
        full = base * 2 ** (attempt - 1)
        assert full / 2 - 2 <= wait <= full + 1, (attempt, wait)
        huey.execute(task, timestamp=task.eta)
    assert due_retries() == []
    run = run_of(run.id)
    assert (run.status, run.attempts) == ("failed", 3)
    assert "HTTP 500" in run.error
    assert run.log.count("Attempt ") == 3 and "Trying again in" in run.log
    assert run.finished_at is not None and run.duration_ms >= 0
    assert len(endpoint.requests) == 3

    mail = smtp.wait_for(user.email, "failed")
    assert "“Ping” failed" in mail["Subject"]
    assert "HTTP 500" in text_of(mail) and f"/runs/{run.id}" in text_of(mail)

    # A second failure within the hour: no second e-mail.
    service.run_now(automation)
    for _ in range(2):
        (task,) = due_retries()
        huey.execute(task, timestamp=task.eta)
    assert len(failure_mails(smtp, user)) == 1
    # An hour later, the next failure tells the owner again.
    Automation.update(last_failure_mail_at=utcnow() - timedelta(minutes=61)).where(
        Automation.id == automation.id).execute()
    service.update_automation(fresh(automation), name="Ping", flow="http_request",
                              config=http_config(endpoint.url), trigger="manual", max_attempts=1)
    assert service.run_now(fresh(automation)).status == "failed"
    assert len(failure_mails(smtp, user)) == 2


def test_the_backoff_doubles_with_jitter(ctx):
    base = ctx.config["AUTOMATIONS_RETRY_BASE_SECONDS"]
    for attempt in (1, 2, 3, 4):
        full = base * 2 ** (attempt - 1)
        waits = [service.retry_delay(attempt) for _ in range(50)]
        assert all(full / 2 <= w <= full for w in waits)
        assert len(set(waits)) > 1  # jitter: not all at the same moment


@pytest.fixture
def test_flows():
    """Flows registered through the registry's own API for one test, then removed."""
    added = []

    def add(name, run, max_attempts=None):
        added.append(registry.register(registry.Flow(
            name=name, title=name, description="test flow", fields=(), run=run,
            max_attempts=max_attempts)))

    yield add
    for flow in added:
        registry.FLOWS.pop(flow.name, None)


def test_a_flow_s_own_number_of_tries_wins(ctx, ws, test_flows):
    calls = []

    def flaky(run_ctx):
        calls.append(1)
        raise registry.FlowFailed("still down")

    test_flows("test_flaky", flaky, max_attempts=2)
    automation = service.create_automation(ws, name="Flaky", flow="test_flaky", config={},
                                           trigger="manual", max_attempts=5)
    run = service.run_now(automation)
    for task in due_retries():
        huey.execute(task, timestamp=task.eta)
    assert (run_of(run.id).status, run_of(run.id).attempts, len(calls)) == ("failed", 2, 2)


def test_a_flow_that_crashes_fails_its_run_not_the_worker(ctx, ws, test_flows):
    test_flows("test_crash", lambda run_ctx: 1 / 0)
    automation = service.create_automation(ws, name="Crash", flow="test_crash", config={},
                                           trigger="manual", max_attempts=1)
    run = service.run_now(automation)
    assert run.status == "failed" and "ZeroDivisionError" in run.error


def test_a_duplicate_task_never_runs_a_run_twice(ctx, ws, endpoint):
    automation = make(ws, endpoint.url)
    run = service.run_now(automation)
    assert service.execute(run.id) is None  # already done: the claim refuses it
    assert len(endpoint.requests) == 1


def test_a_queued_run_whose_task_was_lost_is_enqueued_again(ctx, ws, endpoint):
    automation = make(ws, endpoint.url)
    run = AutomationRun.create(automation=automation, workspace=ws, trigger="manual",
                               created_at=utcnow() - timedelta(minutes=20))
    recent = AutomationRun.create(automation=automation, workspace=ws, trigger="manual")
    assert service.requeue_stalled() == 1
    assert run_of(run.id).status == "succeeded" and run_of(recent.id).status == "queued"


def test_a_run_whose_worker_stopped_midway_is_tried_again_or_failed_when_out_of_tries(
        ctx, ws, endpoint):
    automation = make(ws, endpoint.url, max_attempts=2)
    long_ago = utcnow() - timedelta(minutes=30)
    retried = AutomationRun.create(automation=automation, workspace=ws, trigger="manual",
                                   status="running", attempts=1, started_at=long_ago)
    spent = AutomationRun.create(automation=automation, workspace=ws, trigger="manual",
                                 status="running", attempts=2, started_at=long_ago)
    busy = AutomationRun.create(automation=automation, workspace=ws, trigger="manual",
                                status="running", attempts=1, started_at=utcnow())
    assert service.requeue_stalled() == 1
    assert run_of(retried.id).status == "succeeded" and run_of(retried.id).attempts == 2
    assert "The worker stopped during this attempt." in run_of(retried.id).log
    assert run_of(spent.id).status == "failed"
    assert run_of(spent.id).error == "The worker stopped during the last attempt."
    assert run_of(busy.id).status == "running"  # still within any attempt's time
    assert len(endpoint.requests) == 1


def test_skipped_flows_are_not_failures(ctx, ws, test_flows, smtp, user):
    def nothing(run_ctx):
        raise registry.FlowSkipped("no e-mail in the event")

    test_flows("test_skip", nothing)
    automation = service.create_automation(ws, name="Skip", flow="test_skip", config={},
                                           trigger="manual")
    run = service.run_now(automation)
    assert run.status == "skipped" and "no e-mail in the event" in run.log
    assert failure_mails(smtp, user) == []


def test_a_dry_run_sends_nothing_and_is_tried_once(ctx, ws, endpoint):
    endpoint.status = 500
    automation = make(ws, endpoint.url)
    service.pause(automation)
    run = service.run_now(fresh(automation), dry_run=True)
    assert run.status == "succeeded" and "dry run" in run.log
    assert endpoint.requests == [] and due_retries() == []


# --- pause -----------------------------------------------------------------------------------


def test_paused_automations_enqueue_nothing(ctx, ws, endpoint):
    scheduled = make(ws, endpoint.url, trigger="schedule", cron="* * * * *", name="S")
    chat = make(ws, endpoint.url, trigger="chat", chat_event="message_received", name="C")
    hook = make(ws, endpoint.url, trigger="webhook", name="W")
    slot = scheduled.next_run_at
    for automation in (scheduled, chat, hook):
        service.pause(fresh(automation))
    assert fresh(scheduled).next_run_at is None
    assert service.tick(slot + timedelta(hours=1)) == 0
    assert service.publish_chat_event(ws, "message_received", {"text": "hi"}) == 0
    with pytest.raises(RuleError) as refused:
        service.inbound_webhook(hook.webhook_secret, {})
    assert refused.value.status == 409
    with pytest.raises(RuleError):
        service.run_now(fresh(hook))
    assert AutomationRun.select().count() == 0 and endpoint.requests == []

    # Resumed: scheduling starts from now; the slots that passed while paused are not "missed".
    service.resume(fresh(scheduled))
    assert fresh(scheduled).next_run_at > utcnow()


def test_pause_all_stops_the_workspace_and_resume_all_starts_it_again(ctx, ws, endpoint):
    scheduled = make(ws, endpoint.url, trigger="schedule", cron="* * * * *", name="S")
    chat = make(ws, endpoint.url, trigger="chat", chat_event="conversation_started", name="C")
    alone = make(ws, endpoint.url, trigger="schedule", cron="* * * * *", name="Paused alone")
    service.pause(fresh(alone))
    slot = scheduled.next_run_at
    service.pause_all(ws)
    assert service.tick(slot + timedelta(minutes=5)) == 0
    assert service.publish_chat_event(ws, "conversation_started", {}) == 0
    with pytest.raises(RuleError):
        service.run_now(fresh(chat))
    assert AutomationRun.select().count() == 0

    service.resume_all(ws)
    assert fresh(scheduled).next_run_at > utcnow()
    assert fresh(alone).next_run_at is None  # paused on its own: stays paused
    assert service.publish_chat_event(ws, "conversation_started", {}) == 1


def test_a_queued_run_reaching_a_paused_automation_is_skipped(ctx, ws, endpoint):
    automation = make(ws, endpoint.url)
    run = AutomationRun.create(automation=automation, workspace=ws, trigger="manual")
    service.pause(fresh(automation))
    service.execute(run.id)
    assert run_of(run.id).status == "skipped" and "paused" in run_of(run.id).log
    assert endpoint.requests == []


# --- chat events -----------------------------------------------------------------------------


def test_a_chat_event_starts_the_automations_waiting_for_it(ctx, ws, endpoint):
    automation = make(ws, endpoint.url, trigger="chat", chat_event="message_received")
    make(ws, endpoint.url, trigger="chat", chat_event="conversation_resolved", name="Other")
    started = service.publish_chat_event(ws, "message_received", {
        "conversation_id": 7, "text": "Do you ship to Iceland?", "visitor_email": "",
        "visitor_name": "Sam", "site_name": "Shop", "page_url": "https://shop.example/p"})
    assert started == 1
    (run,) = runs(automation)
    assert run.status == "succeeded" and run.trigger == "chat"
    assert json.loads(endpoint.requests[0]["body"]) == {"text": "Do you ship to Iceland?"}
    assert service.publish_chat_event(ws, "visitor_left_email", {}) == 0
    with pytest.raises(ValueError):
        service.publish_chat_event(ws, "no_such_event", {})


def test_another_workspace_s_events_and_credentials_are_out_of_reach(app, ctx, ws, endpoint):
    make(ws, endpoint.url, trigger="chat", chat_event="message_received")
    make_user(app, email=OTHER_EMAIL, name="Rita Rival")
    other = workspace_id_of(OTHER_EMAIL)
    assert service.publish_chat_event(other, "message_received", {"text": "x"}) == 0
    cred = vault.store(other, "CRM", "Rival token", "api_token", {"token": SECRET_TOKEN})
    before = db_state(Automation)
    with pytest.raises(registry.ConfigError) as refused:
        make(ws, endpoint.url, config=http_config(endpoint.url, credential=str(cred.id)))
    assert "credential" in refused.value.errors
    assert db_state(Automation) == before


# --- set-up checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("fields, field", [
    ({"cron": "61 * * * *", "trigger": "schedule"}, "cron"),
    ({"cron": "* * * * * *", "trigger": "schedule"}, "cron"),
    ({"cron": "", "trigger": "schedule"}, "cron"),
    ({"trigger": "chat", "chat_event": "visitor_sneezed"}, "chat_event"),
    ({"trigger": "carrier_pigeon"}, "trigger"),
    ({"name": "  "}, "name"),
    ({"max_attempts": "0"}, "max_attempts"),
    ({"max_attempts": "many"}, "max_attempts"),
    ({"flow": "teleport"}, "flow"),
    ({"config": http_config("http://127.0.0.1/x", body="{ not json")}, "body"),
])
def test_bad_set_up_is_refused_beside_the_field_and_changes_nothing(ctx, ws, fields, field):
    values = {"name": "Ping", "flow": "http_request", "config": http_config("https://a.example/x"),
              "trigger": "manual", "cron": "", "chat_event": "", "max_attempts": None}
    values.update(fields)
    before = db_state(Automation)
    with pytest.raises(registry.ConfigError) as refused:
        service.create_automation(ws, **values)
    assert field in refused.value.errors, refused.value.errors
    assert db_state(Automation) == before


def test_update_reschedules_and_a_webhook_gets_its_secret(ctx, ws, endpoint):
    automation = make(ws, endpoint.url)
    assert automation.next_run_at is None and automation.webhook_secret == ""
    service.update_automation(automation, name="Ping", flow="http_request",
                              config=http_config(endpoint.url), trigger="webhook")
    secret = fresh(automation).webhook_secret
    assert len(secret) >= 40
    service.update_automation(fresh(automation), name="Ping", flow="http_request",
                              config=http_config(endpoint.url), trigger="schedule",
                              cron="0 6 * * *")
    assert fresh(automation).webhook_secret == "" and fresh(automation).next_run_at is not None
    service.delete_automation(fresh(automation))
    assert Automation.select().count() == 0


# --- inbound webhooks ------------------------------------------------------------------------


@pytest.fixture
def hook(ctx, ws, endpoint):
    automation = make(ws, endpoint.url, trigger="webhook",
                      config=http_config(endpoint.url, body='{"order": {{ event.order|tojson }}}'))
    database.close()  # the test client's requests open their own connection
    yield automation
    database.connect(reuse_if_open=True)


def test_an_inbound_webhook_starts_a_run_with_its_json_body(client, hook, endpoint):
    response = client.post(f"/hooks/{hook.webhook_secret}", json={"order": 1234})
    assert response.status_code == 202
    with connection():
        run = run_of(response.get_json()["run"])
    assert run.status == "succeeded" and run.trigger == "webhook"
    assert json.loads(endpoint.requests[0]["body"]) == {"order": 1234}


def test_an_inbound_webhook_takes_a_form_body(client, hook, endpoint):
    response = client.post(f"/hooks/{hook.webhook_secret}", data={"order": "77"})
    assert response.status_code == 202
    assert json.loads(endpoint.requests[0]["body"]) == {"order": "77"}


@pytest.mark.parametrize("secret, kwargs, status", [
    ("nope-not-a-secret", {"json": {"a": 1}}, 404),
    (None, {"data": b'{"a": "' + b"x" * 70_000 + b'"}', "content_type": "application/json"}, 413),
    (None, {"data": b"{not json", "content_type": "application/json"}, 422),
    (None, {"data": b"[1, 2]", "content_type": "application/json"}, 422),
    (None, {"data": b"\xff\xfe", "content_type": "application/json"}, 422),
    (None, {"data": b"hello", "content_type": "text/plain"}, 422),
])
def test_a_bad_inbound_webhook_is_refused_and_changes_nothing(client, hook, endpoint, secret,
                                                              kwargs, status):
    before = db_state(AutomationRun)
    response = client.post(f"/hooks/{secret or hook.webhook_secret}", **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"]
    assert db_state(AutomationRun) == before and endpoint.requests == []


def test_a_webhook_of_a_paused_automation_answers_409(client, hook):
    with connection():
        service.pause(fresh(hook))
    response = client.post(f"/hooks/{hook.webhook_secret}", json={})
    assert response.status_code == 409 and "paused" in response.get_json()["error"]


# --- the log ---------------------------------------------------------------------------------


def test_no_credential_value_of_the_workspace_reaches_a_run_log(ctx, ws, test_flows):
    cred = vault.store(ws, "CRM", "CRM token", "api_token", {"token": SECRET_TOKEN})

    def leaky(run_ctx):
        # A careless flow: reads the vault itself and prints what it got.
        run_ctx.log(f"calling with {vault.reveal(cred)['token']}")
        raise registry.FlowFailed(f"rejected token {SECRET_TOKEN}")

    test_flows("test_leaky", leaky)
    automation = service.create_automation(ws, name="Leaky", flow="test_leaky", config={},
                                           trigger="manual", max_attempts=1)
    run = service.run_now(automation)
    assert run.status == "failed"
    assert SECRET_TOKEN not in run.log and SECRET_TOKEN not in run.error
    assert "[redacted]" in run.log and "[redacted]" in run.error


def test_a_bearer_token_sent_by_a_flow_is_redacted_in_its_log(ctx, ws, endpoint):
    cred = vault.store(ws, "CRM", "CRM token", "api_token", {"token": SECRET_TOKEN})
    automation = make(ws, endpoint.url, config=http_config(endpoint.url, credential=str(cred.id)))
    run = service.run_now(automation)
    assert endpoint.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert run.status == "succeeded" and SECRET_TOKEN not in run.log


def test_a_run_log_stays_within_64_kb(ctx, ws, test_flows):
    def chatty(run_ctx):
        for i in range(200):
            run_ctx.log(f"line {i} " + "é" * 1000)

    test_flows("test_chatty", chatty)
    automation = service.create_automation(ws, name="Chatty", flow="test_chatty", config={},
                                           trigger="manual")
    run = service.run_now(automation)
    assert run.status == "succeeded"
    assert len(run_of(run.id).log.encode()) <= 64 * 1024
    assert "log cut here" in run_of(run.id).log


# --- retention and figures -------------------------------------------------------------------


def test_old_runs_are_purged_in_batches_per_workspace_setting(app, ctx, ws, endpoint):
    mine = make(ws, endpoint.url)
    make_user(app, email=OTHER_EMAIL, name="Rita Rival")
    other_ws = workspace_id_of(OTHER_EMAIL)
    Workspace.update(run_log_days=30).where(Workspace.id == other_ws).execute()
    theirs = make(other_ws, endpoint.url)
    now = utcnow()
    old, recent = now - timedelta(days=20), now - timedelta(days=3)

    def rows(automation, workspace, when, n, status="succeeded"):
        AutomationRun.insert_many([
            {"automation": automation.id, "workspace": workspace, "trigger": "manual",
             "status": status, "created_at": when, "log": "x"} for _ in range(n)]).execute()

    rows(mine, ws, old, 1234)
    rows(mine, ws, old, 2, status="retrying")  # still in flight: kept
    rows(mine, ws, recent, 5)
    rows(theirs, other_ws, old, 7)  # that workspace keeps 30 days
    assert service.purge_run_logs(now) == 1234
    counts = {(r.workspace_id, r.status): r.n for r in AutomationRun.select(
        AutomationRun.workspace, AutomationRun.status,
        fn.COUNT(AutomationRun.id).alias("n")).group_by(AutomationRun.workspace, AutomationRun.status)}
    assert counts == {(ws, "retrying"): 2, (ws, "succeeded"): 5, (other_ws, "succeeded"): 7}
    assert service.purge_run_logs(now) == 0


def test_runs_per_day_counts_in_the_workspace_s_days(ctx, ws, endpoint):
    set_zone(ws, "America/New_York")
    automation = make(ws, endpoint.url)
    today = date(2025, 3, 12)
    at = [
        (datetime(2025, 3, 12, 15, 0), "succeeded"),  # 11:00 in New York, the 12th
        (datetime(2025, 3, 12, 3, 0), "succeeded"),  # 23:00 on the 11th there
        (datetime(2025, 3, 11, 16, 0), "failed"),
        (datetime(2025, 3, 12, 16, 0), "retrying"),  # not finished: not counted
        (datetime(2025, 1, 1, 12, 0), "succeeded"),  # outside the 30 days
    ]
    AutomationRun.insert_many([
        {"automation": automation.id, "workspace": ws, "trigger": "manual", "status": status,
         "created_at": when} for when, status in at]).execute()
    days = service.runs_per_day(ws, days=30, today=today)
    assert len(days) == 30 and days[0][0] == date(2025, 2, 11) and days[-1][0] == today
    as_dict = {d: (ok, failed) for d, ok, failed in days}
    assert as_dict[today] == (1, 0)
    assert as_dict[date(2025, 3, 11)] == (1, 1)
    assert sum(ok + failed for ok, failed in as_dict.values()) == 3
    assert service.runs_per_day(ws, days=30, automation_id=automation.id + 1, today=today)[-1] \
        == (today, 0, 0)
