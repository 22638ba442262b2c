"""Automations through the real worker: uvicorn and `huey_consumer jobs.main.huey` on one
database, a loopback HTTP endpoint, and real SMTP.

The clock is driven by enqueueing the ticker's `tick_at(<slot>)` task for the consumer (no
sleeping until a slot comes). Set-up (account, credential, automations) goes through the same
service functions the screens call, from this process, on the server's database; everything
after the enqueue happens in the server's processes.
"""

import hashlib
import hmac
import json
import re

import httpx
import pytest

from app import create_app
from app.accounts.models import Membership, User, Workspace
from app.automations import service, vault
from app.automations.models import AutomationRun
from app.db import connection
from tests.e2e.conftest import confirmed_user_over_http, wait_until
from tests.mailcatcher import text_of

SIGNING_SECRET = "whsec_9Fq2Lx7Vb3Nz8Kp4Rt6Wy1"
RUN_SECONDS = 30.0


@pytest.fixture(scope="module")
def server(live_server):
    """The shared live server: it allows loopback endpoints and retries a second apart."""
    return live_server


@pytest.fixture(scope="module")
def app(server):
    """This process's view of the server's database, its queue pointing at the consumer
    (not immediate): a task enqueued here runs in the server's worker."""
    return create_app({"ENV_NAME": "development", "DATA_DIR": server.data_dir, "BASE_URL": server.url,
                       "HUEY_IMMEDIATE": False, "AUTOMATIONS_ALLOW_PRIVATE": True})


@pytest.fixture(scope="module")
def owner(server, app):
    email = confirmed_user_over_http(server, "automations")
    with app.app_context(), connection():
        ws = (Membership.select(Membership.workspace).join(User)
              .where(User.email == email).get().workspace_id)
        Workspace.update(timezone="Europe/Paris").where(Workspace.id == ws).execute()
    return {"email": email, "ws": ws}


def ticks_done(server) -> int:
    """tick_at tasks the consumer has finished (it logs each task it executed)."""
    return len(re.findall(r"jobs\.automations\.tick_at: \S+ executed in", server.log("worker")))


def run_state(app, run_id=None, automation=None):
    with app.app_context(), connection():
        query = AutomationRun.select()
        query = query.where(AutomationRun.id == run_id) if run_id else query.where(
            AutomationRun.automation == automation.id)
        return list(query.order_by(AutomationRun.id))


def finished(app, **where):
    runs = run_state(app, **where)
    return runs if runs and all(r.status in service.FINAL for r in runs) else None


def test_a_scheduled_signed_webhook_fires_in_its_slot_once(server, app, owner, endpoint):
    from jobs import automations as tasks

    with app.app_context(), connection():
        cred = vault.store(owner["ws"], "Shop", "Signing secret", "api_token",
                           {"token": SIGNING_SECRET})
        automation = service.create_automation(
            owner["ws"], name="New year signal", flow="outgoing_webhook",
            config={"url": endpoint.url + "/hook", "credential": str(cred.id)},
            trigger="schedule", cron="0 9 1 1 *")  # nine o'clock, New Year's Day, in Paris
        paused = service.create_automation(
            owner["ws"], name="Paused twin", flow="outgoing_webhook",
            config={"url": endpoint.url + "/paused", "credential": str(cred.id)},
            trigger="schedule", cron="0 9 1 1 *")
        service.pause(paused)
        slot = automation.next_run_at
    assert (slot.month, slot.day, slot.hour) == (1, 1, 8)  # 09:00 in Paris is 08:00 UTC

    # The consumer ticks at the slot, three times (two worker threads): one run.
    ticks_before = ticks_done(server)
    for _ in range(3):
        tasks.tick_at(slot.isoformat())
    (run,) = wait_until(lambda: finished(app, automation=automation), RUN_SECONDS,
                        "the scheduled run to finish")
    assert (run.status, run.slot, run.trigger, run.attempts) == ("succeeded", slot, "schedule", 1)

    (request,) = endpoint.requests
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    stamp, mac = dict(part.split("=", 1) for part in
                      request["headers"]["X-Lumnar-Signature"].split(",")).values()
    expected = hmac.new(SIGNING_SECRET.encode(), f"{stamp}.".encode() + request["body"],
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    document = json.loads(request["body"])
    assert document["automation"]["name"] == "New year signal"
    assert document["data"]["slot"] == slot.isoformat() + "Z"
    assert SIGNING_SECRET not in run.log and "Scheduled for" in run.log

    # Once all three ticks are done: still one run, and the paused twin never ran.
    wait_until(lambda: ticks_done(server) >= ticks_before + 3, RUN_SECONDS, "three ticks")
    assert run_state(app, automation=paused) == []
    assert len(run_state(app, automation=automation)) == 1
    assert [r["path"] for r in endpoint.requests] == ["/hook"]


def test_a_failing_endpoint_is_retried_with_backoff_then_failed_and_the_owner_mailed(
        server, app, owner, endpoint):
    endpoint.status = 503
    with app.app_context(), connection():
        automation = service.create_automation(
            owner["ws"], name="Order sync", flow="http_request",
            config={"method": "POST", "url": endpoint.url + "/orders",
                    "body": '{"order": 42}', "expected_status": "2xx"},
            trigger="manual", max_attempts=3)
        run = service.run_now(automation)
    assert run.status == "queued"  # handed to the consumer, not run here

    (run,) = wait_until(lambda: finished(app, run_id=run.id), RUN_SECONDS, "the run to fail")
    assert (run.status, run.attempts) == ("failed", 3)
    assert "HTTP 503" in run.error and run.log.count("Trying again in") == 2
    first, second, third = (r["at"] for r in endpoint.requests)
    # Backoff from a 1 s base with jitter: the 2nd try waits 0.5-1 s, the 3rd 1-2 s.
    assert second - first >= 0.45 and third - second >= 0.95

    mail = server.smtp.wait_for(owner["email"], "failed")
    assert mail["Subject"] == "Automation “Order sync” failed"
    assert "HTTP 503" in text_of(mail) and f"{server.url}/dashboard/automations/" in text_of(mail)


def test_an_inbound_webhook_runs_through_the_worker(server, app, owner, endpoint):
    with app.app_context(), connection():
        automation = service.create_automation(
            owner["ws"], name="Forward orders", flow="http_request",
            config={"method": "POST", "url": endpoint.url + "/in",
                    "body": '{"order": {{ event.order|tojson }}}', "expected_status": "2xx"},
            trigger="webhook")
    answer = httpx.post(f"{server.url}/hooks/{automation.webhook_secret}", json={"order": 7},
                        timeout=10)
    assert answer.status_code == 202
    (run,) = wait_until(lambda: finished(app, run_id=answer.json()["run"]), RUN_SECONDS,
                        "the webhook's run to finish")
    assert run.status == "succeeded"
    assert json.loads(endpoint.requests[0]["body"]) == {"order": 7}
    assert httpx.post(f"{server.url}/hooks/not-a-secret", json={}, timeout=10).status_code == 404
