"""Chat delivery while automations run: does a busy worker slow the live chat down?

The real server (uvicorn) and a real consumer share one database filled with 10,000
conversations / 100,000 messages; 200 visitor streams and one agent stream are open. Chat
delivery (visitor → agent and agent → visitor, the chat benchmark's own load client) is
measured at a steady rate twice: idle, then while a load client starts 20 automation runs a
second through the inbound webhook, each run an HTTP request flow calling a loopback server.
Goal: p99 within 20 % of the idle figure.

`python tests/bench/bench_chat_automations.py`: progress on stderr, the table on stdout.
"""

import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import bench_chat as chat  # noqa: E402
from tests.bench import fill_chat  # noqa: E402
from tests.bench import sse_client as hc  # noqa: E402
from tests.bench.chat_client import Load  # noqa: E402
from tests.bench.chat_report import clean, goal, load_of, table  # noqa: E402
from tests.bench.harness import run_server, settle  # noqa: E402
from tests.loopback import Endpoint  # noqa: E402

CONVERSATIONS, MESSAGES = 10_000, 100_000
STREAMS = 200
CHAT_RATE = 20  # messages a second, half each way
RUN_RATE = 20  # automation runs a second
SECONDS = 15
# The stock system it calls listens on loopback, which only development allows.
ENV = {**chat.ENV, "LUMNAR_ENV": "development", "LUMNAR_AUTOMATIONS_ALLOW_PRIVATE": "1"}


def log(msg: str) -> None:
    print(f"[chat+automations {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def add_automation(data: Path, url: str) -> str:
    """A webhook-started HTTP request automation in the bench workspace; its secret."""
    from app import create_app
    from app.automations import service
    from app.db import connection
    from app.widget.models import Site

    app = create_app({"ENV_NAME": "development", "DATA_DIR": data,
                      "SECRET_KEY": fill_chat.SECRET_KEY, "MASTER_KEYS": fill_chat.MASTER_KEYS,
                      "AUTOMATIONS_ALLOW_PRIVATE": True})
    with app.app_context(), connection():
        ws = Site.get(Site.site_key == chat.KEY).workspace_id
        automation = service.create_automation(
            ws, name="Forward to the stock system", flow="http_request", trigger="webhook",
            config={"method": "POST", "url": url, "expected_status": "2xx",
                    "body": '{"order": {{ event.order|tojson }}}'})
        return automation.webhook_secret


async def run_load(port, secret, rate, stop, counts: dict):
    """POST /hooks/<secret> `rate` times a second until `stop` (a threading.Event) is set."""
    pool = asyncio.Queue()
    for _ in range(16):
        pool.put_nowait(hc.Connection(port))
    started, i = time.perf_counter(), 0

    async def one(conn, n):
        try:
            r = await conn.request("POST", f"/hooks/{secret}", {"Content-Type": "application/json"},
                                   f'{{"order": {n}}}'.encode(), 5.0)
            counts[r.status] = counts.get(r.status, 0) + 1
        except Exception:  # counted as a failed start; the load goes on
            counts["error"] = counts.get("error", 0) + 1
        finally:
            pool.put_nowait(conn)

    while not stop.is_set():
        i += 1
        if not pool.empty():
            asyncio.ensure_future(one(pool.get_nowait(), i))
        else:
            counts["skipped"] = counts.get("skipped", 0) + 1
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
    await asyncio.sleep(1)
    while not pool.empty():
        pool.get_nowait().close()


def runs_finished(data: Path) -> int:
    import sqlite3

    db = sqlite3.connect(data / "lumnar.db")
    try:
        return db.execute("SELECT COUNT(*) FROM automation_run WHERE status IN "
                          "('succeeded', 'failed', 'skipped')").fetchone()[0]
    finally:
        db.close()


def phase(port, pid, loaders, data, secret):
    agent = chat.Agent(port)
    asyncio.run(agent.log_in())
    load = Load(port, 1, dict(cookie=agent.cookie, csrf=agent.csrf, after=agent.after))
    out = {}
    try:
        load.open("visitors", loaders, agent_stream=True, deadline=60)
        settle(pid, 10)
        log(f"idle: {CHAT_RATE} msg/s for {SECONDS} s")
        out["idle"] = load.drive(CHAT_RATE, SECONDS, loaders)
        log(out["idle"].line())
        settle(pid, 10)
        log(f"busy: {CHAT_RATE} msg/s for {SECONDS} s while {RUN_RATE} runs/s start")
        load_stop, starts = threading.Event(), {}
        before = runs_finished(data)
        runner = threading.Thread(target=lambda: asyncio.run(run_load(port, secret, RUN_RATE, load_stop, starts)))
        runner.start()
        time.sleep(2)  # the worker reaches its pace first
        t0, done0 = time.perf_counter(), runs_finished(data)
        out["busy"] = load.drive(CHAT_RATE, SECONDS, loaders)
        log(out["busy"].line())
        out["runs_per_s"] = (runs_finished(data) - done0) / (time.perf_counter() - t0)
        load_stop.set()
        runner.join()
        out["starts"] = starts
        out["runs_total"] = runs_finished(data) - before
    finally:
        load.shutdown()
    return out


def main():
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]
    fill_chat.filled_db(CONVERSATIONS, MESSAGES)
    data = Path(tempfile.mkdtemp(prefix="lumnar-bench-chat-automations-"))
    endpoint = Endpoint()
    try:
        fill_chat.prepare(data, CONVERSATIONS, MESSAGES)
        loaders, _ = chat.seed(data, STREAMS, 0)
        secret = add_automation(data, endpoint.url + "/hook")
        log("starting uvicorn + huey_consumer")
        with run_server("app.asgi:app", env=ENV, data=str(data), worker=True, ready_timeout=60,
                        log=str(data / "server.log")) as lumnar:
            r = phase(lumnar.port, lumnar.pid, loaders, data, secret)
        errors = chat.server_errors(data / "server.log")
    finally:
        shutil.rmtree(data, ignore_errors=True)
        endpoint.stop()
    load = (load_before, os.getloadavg()[0])
    print(f"\nChat while automations run: {os.cpu_count()} cores, whole run "
          f"{time.monotonic() - t_start:.0f} s, load average {load[0]:.1f} at the start and "
          f"{load[1]:.1f} at the end.")
    idle, busy = r["idle"], r["busy"]
    both_clean = clean(idle) and clean(busy)
    rows = []
    for q, name in ((.5, "p50"), (.95, "p95"), (.99, "p99")):
        target = goal(busy.p(q), "≤", 1.2 * idle.p(q), " ms (idle + 20 %)", both_clean) if name == "p99" else ""
        rows.append((f"chat delivery {name}, both ways (floor column: idle)", busy.p(q), idle.p(q), "ms",
                     target, f"busy: {load_of(busy)}; idle: {load_of(idle)}"))
    rows += [
        ("automation runs finished per second while chat was measured", r["runs_per_s"], None,
         "runs/s", goal(r["runs_per_s"], "≥", 0.95 * RUN_RATE, " runs/s (95 % of the runs started)"),
         "webhook starts answered: " + ", ".join(f"{k}×{v}" for k, v in sorted(r["starts"].items(), key=str))),
        ("calls the automation made to its endpoint", len(endpoint.requests), None, "", "", ""),
    ]
    table(f"6. Chat delivery at {CHAT_RATE} msg/s for {SECONDS} s with {STREAMS} visitor streams, "
          f"idle (floor column) and while {RUN_RATE} automation runs a second execute (each an "
          "HTTP request flow to a loopback server, started through the inbound webhook).", rows)
    print("\nServer errors:", "; ".join(f"{c} × {line}" for line, c in errors) or "none")


if __name__ == "__main__":
    main()
