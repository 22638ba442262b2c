"""Automation benchmark: the scheduler's tick and run throughput through the real consumer.

1. Tick with 10,000 active scheduled automations due (four time zones): time to find them,
   create their runs and enqueue them, beside a bare INSERT of the same 10,000 run rows (and,
   for reference, 10,000 bare Huey enqueues).
2. No-op flow runs per second through a real `huey_consumer` (2 thread workers), each run
   queued at once (as a tick or a chat event queues them) and finished with its log written,
   beside bare no-op Huey tasks queued the same way through the same consumer set-up (goal:
   at least 50 %).

`python tests/bench/bench_automations.py [--quick]`: progress on stderr, tables on stdout.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DATA = tempfile.mkdtemp(prefix="lumnar-bench-automations-")
# Set before the app is built (on import of the worker module) so that it opens this database.
os.environ.update(LUMNAR_ENV="development", LUMNAR_DATA_DIR=DATA, LUMNAR_SECRET_KEY="bench",
                  LUMNAR_RATELIMIT="0")
for name in [k for k in os.environ if k.startswith("LUMNAR_") and k not in
             ("LUMNAR_ENV", "LUMNAR_DATA_DIR", "LUMNAR_SECRET_KEY", "LUMNAR_RATELIMIT")]:
    del os.environ[name]

from app import migrations  # noqa: E402
from app.accounts.models import Workspace  # noqa: E402
from app.automations import service  # noqa: E402
from app.automations.models import Automation, AutomationRun  # noqa: E402
from app.db import connection, database, utcnow  # noqa: E402
from tests.bench import automations_worker as worker  # noqa: E402
from tests.bench.harness import BIN, ROOT, table  # noqa: E402

huey = worker.huey
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata")
CRONS = ("* * * * *", "*/5 * * * *", "0 * * * *", "30 9 * * *")


def log(msg: str) -> None:
    print(f"[automations {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


# --- 1. the tick -----------------------------------------------------------------------------


def fill(count: int) -> tuple[list[int], object]:
    """`count` scheduled automations, all due at the current minute, spread over four zones."""
    slot = utcnow().replace(second=0, microsecond=0)
    workspaces = [Workspace.create(name=f"Bench {z}", timezone=z).id for z in ZONES]
    rows = [{"workspace": workspaces[i % 4], "name": f"A{i}", "flow": "bench_noop",
             "config": "{}", "trigger": "schedule", "cron": CRONS[i % 4], "next_run_at": slot}
            for i in range(count)]
    with database.atomic():
        for start in range(0, count, 1000):
            Automation.insert_many(rows[start:start + 1000]).execute()
    return workspaces, slot


def reset(slot) -> None:
    huey.flush()
    with database.atomic():
        AutomationRun.delete().execute()
        Automation.update(next_run_at=slot).execute()


def tick_figure(count: int, rounds: int) -> list[tuple]:
    workspaces, slot = fill(count)
    ids = [a.id for a in Automation.select(Automation.id)]
    ours, floor, enqueue = [], [], []
    for _ in range(rounds):
        reset(slot)
        started = time.perf_counter()
        made = service.tick(slot + timedelta(seconds=10))
        ours.append(time.perf_counter() - started)
        assert made == count and huey.pending_count() == count, (made, huey.pending_count())

        reset(slot)
        rows = [{"automation": a, "workspace": workspaces[i % 4], "trigger": "schedule",
                 "slot": slot, "payload": "{}", "log": ""} for i, a in enumerate(ids)]
        started = time.perf_counter()
        with database.atomic():
            AutomationRun.insert_many(rows).execute()
        floor.append(time.perf_counter() - started)

        reset(slot)
        started = time.perf_counter()
        for i in range(count):
            worker.bare_noop(i)
        enqueue.append(time.perf_counter() - started)
    reset(slot)
    ms = lambda values: statistics.median(values) * 1000  # noqa: E731
    log(f"tick {ms(ours):.0f} ms, bare insert {ms(floor):.0f} ms, bare enqueue {ms(enqueue):.0f} ms")
    return [
        (f"tick: find, create and enqueue {count:,} due runs (median of {rounds})", ms(ours),
         ms(floor), "ms", "floor: one bare INSERT of the same rows"),
        (f"reference: {count:,} bare Huey enqueues", ms(enqueue), ms(floor), "ms",
         "part of the tick's time"),
    ]


# --- 2. runs through the consumer ------------------------------------------------------------


def start_consumer(log_path: Path) -> subprocess.Popen:
    env = {**os.environ}
    out = open(log_path, "ab")  # noqa: SIM115 (kept open for the child's life)
    # -n: no periodic tasks (the minute tick must not join in); short polling delays so an
    # idle moment does not hide the throughput; the same for the floor and for Lumnar.
    return subprocess.Popen(
        [str(BIN / "huey_consumer"), "tests.bench.automations_worker.huey", "-w", "2",
         "-k", "thread", "-n", "-d", "0.005", "-m", "0.05", "-q"],
        cwd=ROOT, env=env, stdout=out, stderr=out)


def enqueue_many(signatures) -> None:
    """All at once, in one queue transaction: the consumer's pace is measured, not ours."""
    storage = huey.storage
    rows = [(storage.name, storage.to_blob(huey.serialize_task(s)), 0) for s in signatures]
    with storage.db(commit=True) as cursor:
        cursor.executemany("INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)", rows)


def bare_round(n: int) -> float:
    started = time.perf_counter()
    enqueue_many(worker.bare_noop.s(i) for i in range(n))
    wait(lambda: huey.pending_count() == 0, 120, "bare tasks to finish")
    return n / (time.perf_counter() - started)


def runs_round(automation, n: int) -> float:
    """n queued runs (as a tick or a chat event makes them: one insert, one enqueue), then
    the time until the consumer has run every one and written its log."""
    done = lambda: AutomationRun.select().where(  # noqa: E731
        (AutomationRun.automation == automation.id)
        & (AutomationRun.status == AutomationRun.SUCCEEDED)).count()
    before = done()
    started = time.perf_counter()
    with database.atomic():
        ids = [r.id for r in AutomationRun.insert_many(
            [{"automation": automation.id, "workspace": automation.workspace_id,
              "trigger": "manual"}] * n).returning(AutomationRun.id).execute()]
    service._enqueue(ids)
    # The queue empties first (a cheap count, as for the bare tasks); then the last few runs
    # finish. Counting finished runs all along would scan the runs table 200 times a second.
    wait(lambda: huey.pending_count() == 0, 300, "runs to be taken")
    wait(lambda: done() - before >= n, 300, "runs to finish")
    elapsed = time.perf_counter() - started
    failed = AutomationRun.select().where(AutomationRun.status != AutomationRun.SUCCEEDED).count()
    assert failed == 0, f"{failed} runs did not succeed"
    return n / elapsed


def throughput_figure(n: int, rounds: int) -> list[tuple]:
    ws = Workspace.create(name="Throughput")
    automation = Automation.create(workspace=ws, name="No-op", flow="bench_noop", config="{}",
                                   trigger="manual")
    huey.flush()
    proc = start_consumer(Path(DATA) / "consumer.log")
    try:
        worker.bare_noop(0)  # warm-up: the consumer is up once this is gone
        wait(lambda: huey.pending_count() == 0, 60, "the consumer to start")
        runs_round(automation, 20)
        bare, ours = [], []
        for _ in range(rounds):
            bare.append(bare_round(n))
            ours.append(runs_round(automation, n))
            log(f"bare {bare[-1]:.0f} tasks/s, no-op flow {ours[-1]:.0f} runs/s")
        sample = AutomationRun.select().where(AutomationRun.automation == automation.id).first()
        log(f"a run's log: {sample.log!r}")
    finally:
        proc.terminate()
        proc.wait(10)
    best_ours, best_bare = max(ours), max(bare)
    goal = "≥ 50 %, " + ("met" if best_ours >= best_bare / 2 else "not met")
    return [(f"no-op flow through the consumer, runs/s (best of {rounds} × {n:,})", best_ours,
             best_bare, "/s", goal)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller figures, for a smoke run")
    args = parser.parse_args()
    count, rounds, n = (2000, 2, 300) if args.quick else (10_000, 3, 2000)
    try:
        with worker.app.app_context(), connection():
            migrations.run()
            log(f"tick with {count:,} due automations")
            rows = tick_figure(count, rounds)
            log(f"{n:,} no-op runs through huey_consumer, beside {n:,} bare tasks")
            rows += throughput_figure(n, rounds)
        table("Automations (SQLite file, 2 thread workers)", rows)
    finally:
        shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
