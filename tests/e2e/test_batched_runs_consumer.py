"""Runs created together reach the real worker in one queue transaction, and each runs once.

A tick with several automations due in the same slot, and a chat message that several
automations listen for, each create several runs at once; `service._enqueue` hands those to
Huey as one batch of rows written straight into the queue's table (not one enqueue each).
Here that batch goes through uvicorn and `huey_consumer jobs.main.huey` on one database: every
run must succeed on its first attempt and call its endpoint exactly once.
"""

import re
from datetime import timedelta

import pytest
from huey.storage import SqliteStorage

from app import create_app
from app.accounts.models import Membership, User, Workspace
from app.automations import service
from app.automations.models import Automation, AutomationRun
from app.db import connection, utcnow
from tests.e2e.conftest import HttpUser, confirmed_user_over_http, unique_email, wait_until

RUN_SECONDS = 30.0
BATCH = 5
VISITOR_TOKEN_HEADER = "X-Lumnar-Visitor"


@pytest.fixture(scope="module")
def app(live_server):
    """This process's view of the server's database, its queue pointing at the consumer (not
    immediate): what it enqueues, the server's worker runs."""
    return create_app({"DATA_DIR": live_server.data_dir, "BASE_URL": live_server.url,
                       "ENV_NAME": "development", "HUEY_IMMEDIATE": False,
                       "AUTOMATIONS_ALLOW_PRIVATE": True})


@pytest.fixture(scope="module")
def owner(live_server, app):
    email = confirmed_user_over_http(live_server, "batch")
    with app.app_context(), connection():
        ws = (Membership.select(Membership.workspace).join(User)
              .where(User.email == email).get().workspace_id)
        Workspace.update(timezone="UTC").where(Workspace.id == ws).execute()
    return {"email": email, "ws": ws}


def http_automation(app, ws, name, url, **trigger) -> Automation:
    with app.app_context(), connection():
        return service.create_automation(
            ws, name=name, flow="http_request",
            config={"method": "POST", "url": url, "body": '{"sent": {{ event|tojson }}}',
                    "expected_status": "2xx"},
            **trigger)


def runs_of(app, automations) -> list[AutomationRun]:
    with app.app_context(), connection():
        return list(AutomationRun.select()
                    .where(AutomationRun.automation.in_([a.id for a in automations]))
                    .order_by(AutomationRun.automation))


def all_finished(app, automations):
    runs = runs_of(app, automations)
    done = len(runs) >= len(automations) and all(r.status in service.FINAL for r in runs)
    return runs if done else None


def ticks_done(server) -> int:
    """tick_at tasks the consumer has finished (it logs each task it executed)."""
    return len(re.findall(r"jobs\.automations\.tick_at: \S+ executed in", server.log("worker")))


def queue_empty(app) -> bool:
    """No task waits in the server's queue: any second task for a run would have run by now."""
    from jobs import huey

    with app.app_context():
        return huey.pending_count() == 0


def assert_each_ran_once(app, automations, endpoint, paths):
    runs = wait_until(lambda: all_finished(app, automations), RUN_SECONDS,
                      f"{len(automations)} runs to finish")
    # Nothing is left in the queue to run later: what the endpoint saw is all there is.
    wait_until(lambda: queue_empty(app), RUN_SECONDS, "the queue to drain")
    assert [(r.automation_id, r.status, r.attempts) for r in runs] == [
        (a.id, "succeeded", 1) for a in automations]
    assert sorted(r["path"] for r in endpoint.requests) == sorted(paths)
    return runs


def test_a_tick_that_starts_several_runs_runs_each_exactly_once(live_server, app, owner,
                                                                endpoint):
    from jobs import automations as tasks
    from jobs import huey

    # The several runs go to the worker as one batch: the consumer's queue is SQLite's.
    assert isinstance(huey.storage, SqliteStorage) and not huey.immediate
    # A daily slot a few minutes from now: nothing else in the shared database is due then
    # that is not due already, and the consumer's own minute ticker does not reach it first.
    soon = utcnow() + timedelta(minutes=3)
    cron = f"{soon.minute} {soon.hour} * * *"
    automations = [http_automation(app, owner["ws"], f"Nightly {i}", f"{endpoint.url}/tick/{i}",
                                   trigger="schedule", cron=cron) for i in range(BATCH)]
    slots = {a.next_run_at for a in automations}
    assert len(slots) == 1
    (slot,) = slots

    ticks_before = ticks_done(live_server)
    tasks.tick_at(slot.isoformat())
    wait_until(lambda: ticks_done(live_server) > ticks_before, RUN_SECONDS, "the tick")

    runs = assert_each_ran_once(app, automations, endpoint,
                                [f"/tick/{i}" for i in range(BATCH)])
    assert {(r.trigger, r.slot) for r in runs} == {("schedule", slot)}


def test_a_chat_message_that_starts_several_runs_runs_each_exactly_once(live_server, app,
                                                                       owner, endpoint):
    import httpx

    automations = [http_automation(app, owner["ws"], f"Forward message {i}",
                                   f"{endpoint.url}/chat/{i}", trigger="chat",
                                   chat_event="message_received") for i in range(BATCH)]
    with HttpUser(live_server.url) as http:
        http.log_in(owner["email"])
        _, site_key = http.create_site("Batch shop", ["https://shop.example.com"])

    # A visitor's message to the web process (the team is away, so with an e-mail): the chat
    # publishes one "message received" event, which starts every automation listening for it.
    with httpx.Client(base_url=live_server.url, timeout=10) as visitor:
        token = visitor.post(f"/widget/{site_key}/visitors").json()["token"]
        visitor.headers[VISITOR_TOKEN_HEADER] = token
        answer = visitor.post(f"/widget/{site_key}/messages",
                              data={"body": "Do you ship to Lyon?",
                                    "email": unique_email("batch-visitor")})
        assert answer.status_code == 200, answer.text

    runs = assert_each_ran_once(app, automations, endpoint,
                                [f"/chat/{i}" for i in range(BATCH)])
    assert {r.trigger for r in runs} == {"chat"}
