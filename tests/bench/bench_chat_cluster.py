"""Live chat across web processes (issue 12): Lumnar on PostgreSQL + Redis with N web processes,
beside a floor (the bare stack doing the same hop: floor_cluster_app.py) measured in the same run
on the same servers.

`python tests/bench/bench_chat_cluster.py [--quick] [--workers N] [--database-url URL]
[--redis-url URL] [--clients C]` (also reached through `bench_chat.py` given any of --workers,
--database-url, --redis-url). Progress on stderr, tables on stdout. It measures at N = 1 and at
N (default 2):

1. delivery latency p50/p99 of a message posted to one process and received on an agent's
   dashboard stream and on the visitor's stream held by ANOTHER process (at N = 1: the same
   process, no hop: the baseline the hop is measured against);
2. the highest sustained rate: steps up while every message is sent, answered 2xx and
   delivered once with p99 ≤ 100 ms and ≥ 95 % of the rate achieved (chat_client.Outcomes);
3. the CPU-seconds that each part spends per 1,000 messages at a fixed rate: the web processes,
   PostgreSQL (the postmaster and every backend, exited ones included), Redis, the Huey worker
   and the load client; and from them a projected rate per added core (a projection, labelled);
4. at the largest N, after its steps, on fresh streams: one web process killed with SIGKILL
   while messages flow; its streams reconnect to a survivor with Last-Event-ID and every event
   (by workspace seq) must reach every stream exactly once: lost and duplicated are counted
   against the chat_event table, and the benchmark exits non-zero unless both are 0 (and every
   accepted message arrived once).

Each set-up opens its streams, warms up for a few seconds (not measured: first connections,
template compilation), runs the fixed rate, then steps the rate. --quick: fewer streams and
shorter runs (about 2 minutes on a quiet 2-core box; the default about 4). The processes' output
is kept in data/bench/last-cluster-logs when it holds an error.

The N web processes are separate `uvicorn app.asgi:app` processes (uvloop, httptools, as the
Procfile runs one) on ports of their own, not `uvicorn --workers N` on one port: with a shared
socket the kernel, not the client, picks the process of each connection, so a message's post
and its stream could land on the same process (no hop) and which one served a connection is
known only after the fact. With a port per process the hop is there by construction for every
timed message, the kill picks its victim, and each process's CPU is read from its own pid. The
load client routes as a load balancer would and fails over when a process is gone
(cluster_client.py).

Without --database-url / --redis-url, throwaway servers are started (tests/servers.py: the test
suite's PostgreSQL with fsync and synchronous_commit off, and Redis); a given database must be
empty (it is migrated, and gets a workspace and thousands of messages). A given Redis carries
the benchmark's wake-ups and task queue on its db.
"""

import argparse
import contextlib
import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import fill_chat  # noqa: E402
from tests.bench.chat_client import DELIVERY_DEADLINE, KEY, Outcomes  # noqa: E402
from tests.bench.cluster_client import Load  # noqa: E402
from tests.bench.harness import BIN, ROOT, cpu_seconds, free_port, percentile, wait_http  # noqa: E402
from tests.servers import ServerMissing  # noqa: E402

# rate: the fixed rate of the latency and CPU figures, below what Lumnar sustains on PostgreSQL
# on a 2-core box at N = 2 (measured: under 100 msg/s there), so that neither figure is a queue's.
FULL = dict(visitors=200, rate=50, seconds=12,
            steps=(100, 150, 200, 300, 400, 600, 800, 1000, 1300, 1600, 2000, 2500, 3000),
            below=(50, 25), step_seconds=4, kill_rate=40, kill_before=4, kill_after=8, settle=15,
            open_deadline=30, warm_seconds=4)
QUICK = dict(visitors=60, rate=50, seconds=4, steps=(100, 200, 400, 800, 1600), below=(50, 25),
             step_seconds=2, kill_rate=40, kill_before=2, kill_after=4, settle=4, open_deadline=20,
             warm_seconds=2)
P99_BOUND = 100.0  # ms: the stepping's bound (chat_client.Outcomes.sustained)
KILL_DEADLINE = 10.0  # s a message may take to arrive during the kill phase
PARTS = ("web", "postgres", "redis", "worker", "client")
PART_NAMES = {"web": "web processes (uvicorn)", "postgres": "PostgreSQL (postmaster + backends)",
              "redis": "Redis", "worker": "Huey worker", "client": "load client"}
FLOOR_TABLE = "bench_floor_event"
ENV = {"LUMNAR_SECRET_KEY": fill_chat.SECRET_KEY, "LUMNAR_MASTER_KEYS": fill_chat.MASTER_KEYS,
       "LUMNAR_RATELIMIT": "0", "LUMNAR_ENV": "production"}


def log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the servers ----------------------------------------------------------------------------


def _stat(pid) -> list | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and its children, those it has reaped included (PostgreSQL's
    postmaster: every backend, background worker and exited connection)."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = _stat(root)
    if fields is None:
        return float("nan")
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            f = _stat(entry.name)
            if f is not None and f[1] == str(root):
                total += sum(int(f[i]) for i in (11, 12, 13, 14))
    return total / tick


class Backends:
    """PostgreSQL and Redis: the given ones, or throwaway servers (tests/servers.py)."""

    def __init__(self, database_url: str | None, redis_url: str | None):
        self.given_db, self.given_redis = database_url, redis_url
        self.pg = self.redis = None
        self.lumnar_url = self.floor_url = self.redis_url = None
        self.pg_root = self.redis_pid = None
        self.version = ""

    def start(self):
        from tests.servers import Postgres, Redis

        if self.given_db:
            self.lumnar_url = self.floor_url = self.given_db
        else:
            pg = Postgres()
            try:
                self.pg = pg.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    pg.stop()
                shutil.rmtree(pg.root, ignore_errors=True)  # (made before initdb ran)
                raise
            self.lumnar_url = self.pg.create("lumnar_bench")
            self.floor_url = self.pg.create("bench_floor")
        if self.given_redis:
            self.redis_url = self.given_redis
        else:
            self.redis = Redis().start()  # (removes its folder itself when it fails)
            self.redis_url = self.redis.url
        self.pg_root, self.version = self._postmaster()
        self.redis_pid = self._redis_pid()
        return self

    def _postmaster(self):
        import psycopg

        with psycopg.connect(self.lumnar_url, autocommit=True) as conn:
            backend, version = conn.execute("SELECT pg_backend_pid(), version()").fetchone()
        # The backend's parent is the postmaster, when the server runs on this machine (a
        # remote server's pid may name some other local process: its name is checked).
        fields = _stat(backend)
        try:
            local = fields is not None and "postgres" in Path(f"/proc/{backend}/comm").read_text()
        except FileNotFoundError:
            local = False
        return (int(fields[1]) if local else None), version.split(",")[0]

    def _redis_pid(self):
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        try:
            return pid if "redis" in Path(f"/proc/{pid}/comm").read_text() else None
        except FileNotFoundError:
            return None

    def stop(self):
        if self.pg is not None:
            self.pg.stop()
        if self.redis is not None:
            self.redis.stop()


def counter(url: str) -> int:
    """The bench workspace's last event number."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute('SELECT coalesce(max("seq"), 0) FROM "event_counter"').fetchone()
    return row[0]


def prepare_floor(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        conn.execute(f"CREATE TABLE {FLOOR_TABLE} (id bigserial PRIMARY KEY, conversation_id integer "
                     "NOT NULL, actor text NOT NULL, body text NOT NULL, created_at timestamptz "
                     "NOT NULL DEFAULT now())")


def drop_floor(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")


def seed(url: str, data_dir: Path, visitors: int) -> list:
    """Migrate the database and write the agent, workspace, site and `visitors` open
    conversations (one message each), through the app's own models; returns each
    conversation's loader (index, conversation, visitor token, stream ticket)."""
    from app import create_app, migrations
    from app.accounts import passwords
    from app.accounts.models import Membership, User, Workspace
    from app.chat import events, live
    from app.chat.models import Conversation, Message
    from app.db import connection, database
    from app.widget import service as widget_service
    from app.widget.models import Site, Visitor

    app = create_app({"ENV_NAME": "development", "DATA_DIR": data_dir, "DATABASE_URL": url,
                      "SECRET_KEY": fill_chat.SECRET_KEY, "MASTER_KEYS": fill_chat.MASTER_KEYS,
                      "RATELIMIT_STORAGE_URI": "memory://"})
    loaders = []
    with app.app_context(), connection():
        migrations.run()
        if Workspace.select().exists():
            raise SystemExit("the database given with --database-url is not empty: the benchmark "
                             "writes a workspace and thousands of messages; give it an empty one")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with database.atomic():
            user = User.create(name="Bea Bench", email=fill_chat.EMAIL, email_verified_at=now,
                               created_at=now, password_hash=passwords.hash_password(fill_chat.PASSWORD))
            workspace = Workspace.create(name="Bench Shop", created_at=now, conversation_limit=None)
            Membership.create(workspace=workspace, user=user, role=Membership.OWNER, created_at=now)
            site = Site.create(workspace=workspace, name="Bench shop", site_key=KEY,
                               allowed_origins="http://127.0.0.1", created_at=now)
            for i in range(visitors):
                v = Visitor.create(site=site, email=f"load{i}@visitor.example",
                                   first_page_url="http://127.0.0.1/shop")
                c = Conversation.create(workspace=workspace.id, site=site, visitor=v,
                                        last_preview="Hello, a question about my parcel", unread_count=1)
                m = Message.create(conversation=c, workspace_id=workspace.id, sender="visitor",
                                   body="Hello, a question about my parcel")
                events.record([live.Written(None, workspace.id, c.id, "message", m.id, "visitor")],
                              tell=False)
                loaders.append(dict(index=i, conversation=c.id, token=widget_service.visitor_token(v),
                                    ticket=widget_service.stream_ticket(c, v)))
    database.obj.close_all()
    return loaders


# --- web processes --------------------------------------------------------------------------


class Cluster:
    def __init__(self, ports, procs):
        self.ports, self.procs = ports, procs

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]


@contextmanager
def cluster(n: int, env: dict, log_path: Path):
    """`n` uvicorn processes, each on a port of its own, serving env's LUMNAR_BENCH_TARGET
    wrapped by probed_asgi.py (its event-loop lag and garbage-collection probe)."""
    ports = [free_port() for _ in range(n)]
    procs = []
    out = open(log_path, "ab")
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                [str(BIN / "uvicorn"), "tests.bench.probed_asgi:app", "--host", "127.0.0.1", "--port", str(port),
                 "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                 "--log-level", "warning", "--timeout-graceful-shutdown", "5"],
                cwd=ROOT, env={**os.environ, **env, "LUMNAR_BASE_URL": f"http://127.0.0.1:{port}"},
                stdout=out, stderr=out))
        for port in ports:
            wait_http(port, "/healthz", 90, poll=0.05)
        yield Cluster(ports, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        out.close()


@contextmanager
def worker(env: dict, log_path: Path):
    out = open(log_path, "ab")
    proc = subprocess.Popen([str(BIN / "huey_consumer"), "jobs.main.huey", "-w", "2", "-k", "thread", "-q"],
                            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        out.close()


class Meter:
    """CPU seconds of each part, read together."""

    def __init__(self, backends: Backends, web_pids: list, worker_pid: int | None, client_pids: list):
        self.backends, self.web, self.worker, self.clients = backends, web_pids, worker_pid, client_pids

    def read(self) -> dict:
        def alive(pid):
            try:
                return cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                return 0.0  # (a killed web process)

        b = self.backends
        return {"web": sum(alive(p) for p in self.web),
                "postgres": tree_cpu(b.pg_root) if b.pg_root else float("nan"),
                "redis": alive(b.redis_pid) if b.redis_pid else float("nan"),
                "worker": alive(self.worker) if self.worker else float("nan"),
                "client": sum(alive(p) for p in self.clients),
                "at": time.monotonic()}

    def quiet(self, timeout: float, cores: float = 0.1) -> float:
        """Wait until the servers (web, PostgreSQL, Redis) use under `cores` together over 0.5 s."""
        t0 = time.monotonic()
        last = self.read()
        while time.monotonic() - t0 < timeout:
            time.sleep(0.5)
            now = self.read()
            used = sum(now[k] - last[k] for k in ("web", "postgres", "redis") if not math.isnan(now[k]))
            if used <= cores * 0.5:
                break
            last = now
        else:
            log(f"servers not quiet after {timeout:g} s (still working off the last step?)")
        return time.monotonic() - t0


def spent(before: dict, after: dict) -> dict:
    out = {k: after[k] - before[k] for k in PARTS}
    out["seconds"] = after["at"] - before["at"]
    return out


class Run(NamedTuple):
    o: Outcomes  # every message's outcome
    cpu: dict  # CPU seconds each part spent over the run, and the run's wall seconds
    lag: dict  # the worst web process's event-loop lag p99 and max, longest GC pause (ms)


def probe(ports: list, query: str = "") -> dict:
    """The probed processes' event-loop lag and GC figures (probed_asgi.py), the worst of them."""
    worst: dict = {}
    for port in ports:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/__bench/probe?{query}")
            snap = json.loads(conn.getresponse().read())
            conn.close()
        except OSError:
            continue  # (a killed process)
        for key in ("lag_p99", "lag_max", "gc_max_pause"):
            if snap.get(key) is not None:
                worst[key] = max(worst.get(key, 0.0), float(snap[key]))
    return worst


def measured_run(load, meter, ports, rate, seconds, loaders, settle, deadline=DELIVERY_DEADLINE) -> Run:
    """One run at `rate`: every message's outcome, each part's CPU, the event-loop lag."""
    meter.quiet(settle)
    probe(ports, "reset=1")
    c0 = meter.read()
    o = load.drive(rate, seconds, loaders, deadline)
    cpu = spent(c0, meter.read())
    lag = probe(ports)
    share = ", ".join(f"{k} {100 * cpu[k] / cpu['seconds']:.0f}%" for k in PARTS if not math.isnan(cpu[k]))
    log(f"{o.line()}; retried {o.retried}; CPU of a core: {share}; loop lag p99 "
        f"{lag.get('lag_p99')} max {lag.get('lag_max')} ms")
    return Run(o, cpu, lag)


def stepping(up, down, run_one) -> list:
    """Up through `up` while each step is sustained; when the first is not, down through `down`
    until one is (bench_chat.stepping)."""
    steps = []
    for rate in up:
        steps.append(run_one(rate))
        if not steps[-1][0].sustained():
            break
    if steps and not steps[0][0].sustained():
        for rate in down:
            steps.append(run_one(rate))
            if steps[-1][0].sustained():
                break
    return steps


def stream_paths(mode: str, loaders: list, after: int) -> tuple[list, str]:
    """Each loader with its visitor stream's path, and the agent stream's path."""
    if mode == "floor":
        return ([{**ld, "stream": f"/sse/visitor?c={ld['conversation']}"} for ld in loaders], "/sse/agent")
    return ([{**ld, "stream": f"/sse/visitor?ticket={ld['ticket']}&after={after}"} for ld in loaders],
            f"/sse/dashboard?after={after}")


def log_in(port: int) -> dict:
    """The agent's session (kept in the database: good on every process) and CSRF token."""
    import asyncio

    from tests.bench.bench_chat import Agent

    agent = Agent(port)
    asyncio.run(agent.log_in())
    return dict(cookie=agent.cookie, csrf=agent.csrf)


def phase(mode: str, n: int, p: dict, ctx: dict, kill: bool = False) -> dict:
    """One set-up (Lumnar or the floor, `n` web processes): streams open, a warm-up, a
    fixed-rate run, the rate stepped up; then, with `kill`, the kill (kill_run)."""
    b = ctx["backends"]
    log(f"{mode}, {n} web process{'es' if n > 1 else ''}: starting")
    with cluster(n, ctx["env"][mode], ctx["logs"] / f"{mode}.log") as c:
        if mode == "lumnar" and ctx["agent"] is None:
            ctx["agent"] = log_in(c.ports[0])
        load = Load(c.ports, ctx["clients"], mode, ctx["agent"] if mode == "lumnar" else None)
        try:
            meter = Meter(b, c.pids, ctx["worker_pid"] if mode == "lumnar" else None,
                          [proc.pid for proc in load.procs])
            after = counter(b.lumnar_url) if mode == "lumnar" else 0
            loaders, agent_path = stream_paths(mode, ctx["loaders"], after)
            opened = load.open("visitors", loaders, agent_path=agent_path, deadline=p["open_deadline"])
            log(f"streams: {opened['counts']} in {opened['seconds']:.1f} s")
            r = {"open": opened["open"], "streams": len(loaders) + ctx["clients"] * n}
            # First use costs (connections opened, templates compiled, caches filled) stay out.
            warm = load.drive(p["rate"], p["warm_seconds"], loaders)
            log(f"warm-up, not measured: {warm.line()}")
            log(f"fixed rate: {p['rate']} msg/s for {p['seconds']} s")
            r["fixed"] = measured_run(load, meter, c.ports, p["rate"], p["seconds"], loaders, p["settle"])
            log("stepping the rate")
            r["steps"] = stepping(p["steps"], p["below"], lambda rate: measured_run(
                load, meter, c.ports, rate, p["step_seconds"], loaders, p["settle"]))
            if kill:
                load.close("visitors")
                r["kill"] = kill_run(c, load, meter, p, ctx)
        finally:
            load.shutdown()
    if kill:
        r["kill"] = exactly_once(r["kill"], b.lumnar_url)
    return r


def kill_run(c: Cluster, load: Load, meter: Meter, p: dict, ctx: dict) -> dict:
    """Fresh streams from the workspace's current number; messages at kill_rate; SIGKILL of the
    last web process after kill_before seconds; then every stream's event ids, once every agent
    stream has caught up with the workspace's last event (or 15 s have passed)."""
    n, url = len(c.ports), ctx["backends"].lumnar_url
    start = counter(url)
    loaders, agent_path = stream_paths("lumnar", ctx["loaders"], start)
    opened = load.open("kill", loaders, agent_path=agent_path, deadline=p["open_deadline"])
    meter.quiet(p["settle"])
    victim = n - 1
    on_victim = sum(1 for ld in loaders if ld["index"] % n == victim) + ctx["clients"]
    log(f"kill: {n} web processes, {p['kill_rate']} msg/s, SIGKILL of process {victim} after "
        f"{p['kill_before']} s ({on_victim} streams on it)")
    out = {}
    seconds = p["kill_before"] + p["kill_after"]
    runner = threading.Thread(target=lambda: out.update(
        o=load.drive(p["kill_rate"], seconds, loaders, KILL_DEADLINE)))
    runner.start()
    time.sleep(0.3 + p["kill_before"])
    c.procs[victim].send_signal(signal.SIGKILL)
    killed = time.time()
    c.procs[victim].wait(10)
    runner.join()
    o = out["o"]
    log(f"kill run: {o.line()}; retried {o.retried}")
    final = counter(url)
    deadline = time.monotonic() + 15
    while True:
        got = load.stream_ids("kill")
        behind = [s for s in got if str(s["tag"]).startswith("agent:") and max(s["ids"], default=start) < final]
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    state = load.streams_state("kill")
    back = [t for t in state["back_at"] if t is not None and t >= killed]
    return dict(n=n, victim=victim, on_victim=on_victim, opened=opened["open"], o=o, got=got,
                start=start, final=final, back=len(back),
                back_s=(max(back) - killed) if back else None, rate=p["kill_rate"], seconds=seconds)


def exactly_once(k: dict, url: str) -> dict:
    """Each stream's event ids against the chat_event rows it should have had: agents every
    event of the workspace but agents' typing; a visitor its conversation's messages, read
    marks, deletion and agents' typing (app/chat/render.py)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute('SELECT "seq", "conversation_id", "kind", "actor" FROM "chat_event" '
                            'WHERE "seq" > %s AND "seq" <= %s ORDER BY "seq"',
                            (k["start"], k["final"])).fetchall()
    agent_seqs = [seq for seq, _, kind, actor in rows if not (kind == "typing" and actor != "visitor")]
    by_conv: dict = {}
    for seq, conv, kind, actor in rows:
        if kind in ("message", "read", "deleted") or (kind == "typing" and actor == "agent"):
            by_conv.setdefault(conv, []).append(seq)
    tally = dict(streams=len(k["got"]), expected=0, received=0, lost=0, duplicated=0, unexpected=0,
                 out_of_order=0, moved=0, moved_expected=0, moved_lost=0, moved_duplicated=0)
    for s in k["got"]:
        expected = set(agent_seqs if str(s["tag"]).startswith("agent:") else by_conv.get(s["tag"], []))
        ids = s["ids"]
        seen = set(ids)
        lost, dup = len(expected - seen), len(ids) - len(seen)
        tally["expected"] += len(expected)
        tally["received"] += len(ids)
        tally["lost"] += lost
        tally["duplicated"] += dup
        tally["unexpected"] += len(seen - expected)
        tally["out_of_order"] += sum(1 for a, z in zip(ids, ids[1:], strict=False) if z < a)
        if s["served_by"][-1] != s["served_by"][0]:
            tally["moved"] += 1
            tally["moved_expected"] += len(expected)
            tally["moved_lost"] += lost
            tally["moved_duplicated"] += dup
    log(f"kill: {tally}")
    return {**{key: v for key, v in k.items() if key != "got"}, "events": len(rows), "tally": tally}


# --- report -----------------------------------------------------------------------------------


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return f"> {DELIVERY_DEADLINE * 1000:,.0f} ms (lost)" if unit == "ms" else "∞"
    if isinstance(value, int):
        return f"{value:,} {unit}".strip()
    digits = 3 if abs(value) < 0.1 else 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
    return f"{value:,.{digits}f} {unit}".strip()


def table(title: str, rows: list, head=("measure", "Lumnar", "floor", "ratio", "note")) -> None:
    """rows: (measure, Lumnar, floor, unit[, note]); the ratio is Lumnar ÷ floor."""
    print(f"\n{title}\n")
    print("| " + " | ".join(head) + " |")
    print("| --- | ---: | ---: | ---: | --- |")
    for row in rows:
        what, ours, floor, unit = row[:4]
        note = row[4] if len(row) > 4 else ""
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (ours, floor))
        ratio = f"{ours / floor:.2f}" if finite and floor else "—"
        print(f"| {what} | {fmt(ours, unit)} | {fmt(floor, unit)} | {ratio} | {note} |")
    sys.stdout.flush()


def load_of(o) -> str:
    extra = f"; answers {', '.join(f'{k}×{v}' for k, v in sorted(o.statuses.items(), key=str))}" if o.statuses else ""
    retried = f"; retried {o.retried:,}" if getattr(o, "retried", 0) else ""
    return (f"sent {o.sent:,} of {o.scheduled:,}; errors {o.errors:,}; lost {o.lost:,}; "
            f"dup {o.duplicates:,}{retried}{extra}")


def best_of(steps):
    ok = [s for s in steps if s.o.sustained()]
    return max(ok, key=lambda s: s.o.rate) if ok else None


def climb(steps) -> str:
    """The steps run, in order: rate, p99, and ✓ (sustained) or ✗."""
    return "; ".join(f"{s.o.rate:,g} {'✓' if s.o.sustained() else '✗'} (p99 {fmt(s.o.p(.99), 'ms')})"
                     for s in steps)


def per_1000(cpu: dict, o) -> dict:
    return {k: 1000 * cpu[k] / o.sent if o.sent else float("nan") for k in PARTS}


def hop(n: int) -> str:
    return "same process, no hop" if n == 1 else "posted to one process, streamed from another"


def report(p: dict, r: dict) -> None:
    ns = r["workers"]
    busy = (" (above the core count: other work shared this box, so every figure carries its noise)"
            if max(r["load"]) > r["cores"] else "")
    print(f"\nLive chat across web processes (issue 12){' — QUICK run: shorter steps, fewer streams' if r['quick'] else ''}: "
          f"{r['cores']} cores, whole run {r['elapsed']:.0f} s, load average {r['load'][0]:.2f} at the start "
          f"and {r['load'][1]:.2f} at the end{busy}. {r['servers']}. Web processes: `uvicorn app.asgi:app "
          f"--loop uvloop --http httptools` (inside probed_asgi.py's event-loop lag probe, as bench_chat.py "
          f"runs it), one per port (N = {', '.join(map(str, ns))}), one Huey worker. Floor: "
          "floor_cluster_app.py on the same servers (INSERT … RETURNING with psycopg 3, PUBLISH on Redis "
          "after the commit, the other process reads the row by id and pushes it down its SSE streams). "
          f"Load: {r['clients']} client processes, {p['visitors']} visitor streams and one agent stream per "
          "client and web process; conversation j's visitor stream on process j mod N, its messages posted "
          "to process (j + 1) mod N, a visitor's message timed on the agent stream of process j mod N. "
          "One workspace.")

    # 1. Latency.
    rows = []
    for n in ns:
        lo, fo = r["lumnar"][n]["fixed"].o, r["floor"][n]["fixed"].o
        for d, label in (("v2a", "visitor → agent's dashboard stream"), ("a2v", "agent → visitor's stream")):
            for q, name in ((.5, "p50"), (.99, "p99")):
                rows.append((f"N = {n}, {label}, {name} ({hop(n)})", lo.p(q, d), fo.p(q, d), "ms",
                             f"Lumnar {load_of(lo)}; floor {load_of(fo)}" if (d, name) == ("v2a", "p50") else ""))
        for d, label in (("v2a", "widget POST"), ("a2v", "dashboard reply POST")):
            rows.append((f"N = {n}, {label} answered, p99", percentile(lo.answered[d], .99),
                         percentile(fo.answered[d], .99), "ms", ""))
        ll, fl = r["lumnar"][n]["fixed"].lag, r["floor"][n]["fixed"].lag
        for key, name in (("lag_p99", "p99"), ("lag_max", "max")):
            rows.append((f"N = {n}, event-loop lag {name}, worst process (probe: 10 ms sleeps)",
                         ll.get(key), fl.get(key), "ms",
                         "how long the loop was busy or blocked: every stream and request of the "
                         "process waits meanwhile" if name == "p99" else ""))
    if 1 in ns and len(ns) > 1:
        n = ns[-1]
        for q, name in ((.5, "p50"), (.99, "p99")):
            ours = r["lumnar"][n]["fixed"].o.p(q) - r["lumnar"][1]["fixed"].o.p(q)
            floor = r["floor"][n]["fixed"].o.p(q) - r["floor"][1]["fixed"].o.p(q)
            rows.append((f"the hop's cost, {name} both ways: N = {n} minus N = 1", ours, floor, "ms",
                         "difference of two percentiles, not a percentile of differences"))
    table(f"1. Delivery latency at {p['rate']} msg/s (half each way) for {p['seconds']} s: from just before "
          "the POST is written to the event read off the other side's stream. Not there within "
          f"{DELIVERY_DEADLINE:g} s = lost (infinite); refused POSTs are lost and kept out of the percentiles.",
          rows)

    # 2. Highest sustained rate.
    rows = []
    for n in ns:
        lb, fb = best_of(r["lumnar"][n]["steps"]), best_of(r["floor"][n]["steps"])
        low = min(s.o.rate for s in r["lumnar"][n]["steps"])
        flow = min(s.o.rate for s in r["floor"][n]["steps"])
        rows.append((f"N = {n}: highest sustained rate", float(lb.o.rate) if lb else f"< {low:,g} msg/s",
                     float(fb.o.rate) if fb else f"< {flow:,g} msg/s", "msg/s",
                     f"Lumnar {climb(r['lumnar'][n]['steps'])}; floor {climb(r['floor'][n]['steps'])}"))
        rows.append((f"N = {n}: delivery p99 at that rate, both ways", lb.o.p(.99) if lb else None,
                     fb.o.p(.99) if fb else None, "ms",
                     f"Lumnar {load_of(lb.o)}" if lb else ""))
        for name, steps in (("Lumnar", r["lumnar"][n]["steps"]), ("floor", r["floor"][n]["steps"])):
            failed = next((s for s in steps if not s.o.sustained()), None)
            if failed is not None:
                cpu, failed = failed.cpu, failed.o
                busy = ", ".join(f"{k} {100 * cpu[k] / cpu['seconds']:.0f} %" for k in PARTS
                                 if not math.isnan(cpu[k]))
                rows.append((f"N = {n}, {name}: first step not sustained, {failed.rate:,g} msg/s",
                             failed.achieved if name == "Lumnar" else None,
                             failed.achieved if name == "floor" else None, "msg/s sent",
                             f"p99 {fmt(failed.p(.99), 'ms')}; {load_of(failed)}; CPU of a core over the step: {busy}"))
    table(f"2. Highest sustained rate: {p['step_seconds']} s steps up while every message is sent, answered "
          f"2xx and delivered exactly once, p99 ≤ {P99_BOUND:g} ms and ≥ 95 % of the rate achieved; the "
          "first step that fails ends the climb.", rows)

    # 3. CPU per 1,000 messages.
    rows = []
    for n in ns:
        lo, lc, _ = r["lumnar"][n]["fixed"]
        fo, fc, _ = r["floor"][n]["fixed"]
        lk, fk = per_1000(lc, lo), per_1000(fc, fo)
        for k in PARTS:
            rows.append((f"N = {n}: {PART_NAMES[k]}", lk[k], fk[k] if k != "worker" else None, "CPU-s",
                         "the floor has no worker" if k == "worker" else ""))
        servers = [k for k in ("web", "postgres", "redis", "worker") if not math.isnan(lk[k])]
        rows.append((f"N = {n}: the servers together ({', '.join(servers)})",
                     sum(lk[k] for k in servers), sum(fk[k] for k in servers if k != "worker"), "CPU-s",
                     f"over {lc['seconds']:.1f} s (Lumnar), {fc['seconds']:.1f} s (floor), delivery wait "
                     "and background work (heartbeats, polls, presence) included"))
    table(f"3. CPU-seconds per 1,000 messages at {p['rate']} msg/s (user + system time of each part over the "
          "run ÷ messages sent × 1,000). Measured.", rows)

    # 4. Projection.
    rows = []
    for n in ns:
        lk = per_1000(r["lumnar"][n]["fixed"].cpu, r["lumnar"][n]["fixed"].o)
        fk = per_1000(r["floor"][n]["fixed"].cpu, r["floor"][n]["fixed"].o)
        for k, what in (("web", "web tier"), ("postgres", "PostgreSQL"), ("redis", "Redis")):
            rows.append((f"N = {n}: messages a second per core of the {what} (1,000 ÷ its CPU-s per 1,000)",
                         1000 / lk[k] if lk[k] and math.isfinite(lk[k]) else None,
                         1000 / fk[k] if fk[k] and math.isfinite(fk[k]) else None, "msg/s", "PROJECTION"))
    extra = r.get("extra_per_process")
    if extra is not None:
        lw1, fw1, lr, fr = extra
        for k in (1, 2, 4, 8):
            ours = k * 1000 / (lw1 + (k - 1) * lr) if lr > 0 else k * 1000 / lw1
            floor = k * 1000 / (fw1 + (k - 1) * fr) if fr > 0 else k * 1000 / fw1
            rows.append((f"{k} web process{'es' if k > 1 else ''}, each on a core of its own", ours, floor,
                         "msg/s", "PROJECTION: k × 1,000 ÷ (web CPU-s per 1,000 at N = 1 + (k − 1) × what one "
                                  "more process adds); PostgreSQL and Redis not the limit"))
        rows.append(("what one more web process adds to the web tier's CPU-s per 1,000 messages (N = "
                     f"{ns[-1]} minus N = 1, ÷ {ns[-1] - 1})", lr, fr, "CPU-s",
                     "measured; every process follows the one workspace and reads each event once"))
        rows.append(("ceiling of the web tier however many processes (1,000 ÷ that addition)",
                     1000 / lr if lr > 0 else None, 1000 / fr if fr > 0 else None, "msg/s",
                     "PROJECTION, for one workspace followed by every process"))
    table("4. Projected rate per added core, from the CPU-seconds of table 3. PROJECTION, not measured: it "
          "assumes the part gets whole cores of its own and that nothing else runs out first (one "
          "workspace's counter row takes its writes one at a time; the network; PostgreSQL's locks, "
          "WAL and fsync, off on the throwaway server).", rows)

    # 5. Kill.
    k = r.get("kill")
    if k is None:
        print("\n5. Kill: not run (needs N ≥ 2).")
    else:
        t, o = k["tally"], k["o"]
        rows = [
            (f"streams checked (open: {k['opened']:,}; on the killed process: {k['on_victim']:,}; "
             f"moved to a survivor: {t['moved']:,})", t["streams"], None, ""),
            (f"events of the workspace during the run (chat_event rows, {k['events']:,}) expected over all "
             "streams", t["expected"], None, ""),
            ("events received, all streams (with duplicates)", t["received"], None, ""),
            ("LOST: expected events never received on a stream", t["lost"], None, "",
             "must be 0" + (": FAILED" if t["lost"] else ": ok")),
            ("DUPLICATED: the same event id more than once on a stream", t["duplicated"], None, "",
             "must be 0" + (": FAILED" if t["duplicated"] else ": ok")),
            ("of which on the streams that moved: expected / lost / duplicated",
             f"{t['moved_expected']:,} / {t['moved_lost']:,} / {t['moved_duplicated']:,}", None, ""),
            ("events received that the stream should not have had / out of order",
             f"{t['unexpected']:,} / {t['out_of_order']:,}", None, ""),
            ("streams back on a survivor after the kill; last one back after", k["back"], None, "",
             f"{fmt(k['back_s'], 's')} after the kill"),
            ("messages (marked, both ways) accepted but never delivered / delivered twice on their stream",
             f"{o.undelivered:,} / {o.duplicates:,}", None, "", "must be 0 / 0; " + load_of(o)),
            ("POSTs sent again to a survivor after a refused or cut connection (same client_id)",
             o.retried, None, ""),
            ("delivery p99 over the whole run, both ways", o.p(.99), None, "ms",
             f"deadline {KILL_DEADLINE:g} s during this run"),
        ]
        table(f"5. SIGKILL of web process {k['victim'] + 1} of {k['n']} at {k['rate']} msg/s after "
              f"{p['kill_before']} s of a {k['seconds']} s run: streams reconnect with Last-Event-ID to a "
              "survivor; each stream's event ids are compared with the chat_event rows it should have "
              "had (agents: all but agents' typing; a visitor: its conversation's messages, read marks, "
              "deletion, agents' typing).", rows)

    print(f"\nWhat {r['cores']} cores can show, and what is projection:\n")
    print("- Measured here: latencies (table 1), the CPU-seconds per 1,000 messages of each part (table 3), "
          "and exactly-once delivery across a SIGKILL (table 5). These hold on any box, give or take "
          "the noise of a shared machine.")
    print(f"- Measured, but a property of this box: the highest sustained rates (table 2). All of it — "
          f"{max(ns)} web processes, PostgreSQL, Redis, the worker and the load client — shares "
          f"{r['cores']} cores, so N = {max(ns)} cannot show scaling: a second web process only gets CPU "
          "that PostgreSQL, Redis and the client also need; the step that fails shows where the box ran "
          "out (CPU of each part printed beside it).")
    print("- Projection, not measured: every rate per added core in table 4. It assumes each part gets "
          "cores of its own, that PostgreSQL's and Redis's costs per message stay as measured here, and "
          "that no lock or network limit comes first.")
    print("\nServer errors (last line of each traceback in the processes' output):\n")
    for line, count in r["server_errors"] or [("none", "")]:
        print(f"- {count}{' × ' if count else ''}{line}")
    sys.stdout.flush()


def server_errors(paths) -> list:
    counts: dict = {}
    for path in paths:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                j = i + 1
                while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                    j += 1
                if j < len(lines):
                    counts[lines[j][:160]] = counts.get(lines[j][:160], 0) + 1
            elif re.match(r"^(WARNING|ERROR|CRITICAL)\b", line):
                counts[line[:160]] = counts.get(line[:160], 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Live chat across web processes (issue 12).")
    parser.add_argument("--quick", action="store_true", help="shorter steps, fewer streams (< 2 min)")
    parser.add_argument("--workers", type=int, default=2,
                        help="web processes to measure beside N = 1 (default 2; the kill runs at this N)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--redis-url", help="a Redis (default: a throwaway server)")
    parser.add_argument("--clients", type=int, default=2, help="load client processes (default 2)")
    args, _ = parser.parse_known_args(argv)
    p = QUICK if args.quick else FULL
    signal.alarm(420 if args.quick else 1200)  # a run that hangs stops by itself
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    t_start, load_before = time.monotonic(), os.getloadavg()[0]
    log(f"load average at the start: {load_before:.2f}")
    ns = sorted({1, max(1, args.workers)})
    work = Path(tempfile.mkdtemp(prefix="lumnar-bench-cluster-"))
    logs = work / "logs"
    logs.mkdir()
    backends = Backends(args.database_url, args.redis_url)
    r = {"workers": ns, "quick": args.quick, "clients": args.clients, "cores": os.cpu_count(),
         "lumnar": {}, "floor": {}}
    try:
        try:
            backends.start()
        except ServerMissing as exc:
            print(f"\nLive chat across web processes: NOT RUN: {exc}; `make servers` installs "
                  "PostgreSQL and Redis (or give --database-url and --redis-url).")
            return 1
        r["servers"] = (f"{backends.version} ({'given' if args.database_url else 'throwaway, fsync and synchronous_commit off'}"
                        f"{'' if backends.pg_root else '; not on this machine: its CPU is not read'}), Redis "
                        f"({'given' if args.redis_url else 'throwaway'}{'' if backends.redis_pid else '; CPU not read'})")
        log(f"servers: {r['servers']}")
        loaders = seed(backends.lumnar_url, work / "seed", p["visitors"])
        prepare_floor(backends.floor_url)
        env = {**ENV, "DATABASE_URL": backends.lumnar_url, "REDIS_URL": backends.redis_url,
               "LUMNAR_DATA_DIR": str(work / "data")}
        ctx = dict(backends=backends, loaders=loaders, clients=args.clients, logs=logs,
                   env={"lumnar": {**env, "LUMNAR_BENCH_TARGET": "app.asgi:app"},
                        "floor": {"FLOOR_DATABASE_URL": backends.floor_url,
                                  "FLOOR_REDIS_URL": backends.redis_url,
                                  "LUMNAR_BENCH_TARGET": "tests.bench.floor_cluster_app:app"}})
        with worker(env, logs / "worker.log") as huey:
            ctx["worker_pid"] = huey.pid
            ctx["agent"] = None
            for n in ns:
                r["floor"][n] = phase("floor", n, p, ctx)
                r["lumnar"][n] = phase("lumnar", n, p, ctx, kill=n == ns[-1] and n >= 2)
            r["kill"] = r["lumnar"][ns[-1]].get("kill")
        if len(ns) > 1:
            n = ns[-1]

            def web(side, k):
                return per_1000(r[side][k]["fixed"].cpu, r[side][k]["fixed"].o)["web"]

            r["extra_per_process"] = (web("lumnar", 1), web("floor", 1),
                                      (web("lumnar", n) - web("lumnar", 1)) / (n - 1),
                                      (web("floor", n) - web("floor", 1)) / (n - 1))
        r["server_errors"] = server_errors(sorted(logs.iterdir()))
        if r["server_errors"]:
            keep = ROOT / "data" / "bench" / "last-cluster-logs"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(logs, keep)
            log(f"server output kept in {keep.relative_to(ROOT)}")
    finally:
        try:
            if backends.floor_url and backends.given_db:
                drop_floor(backends.floor_url)
        finally:
            backends.stop()
            shutil.rmtree(work, ignore_errors=True)
    r.update(elapsed=time.monotonic() - t_start, load=(load_before, os.getloadavg()[0]))
    log(f"done in {r['elapsed']:.0f} s")
    report(p, r)
    k = r.get("kill")
    if k is not None and not kill_passed(k):
        print("\nFAILED: across the kill, events were lost or duplicated, accepted messages were "
              "not delivered, or there was nothing to check (table 5).")
        return 1
    return 0


def kill_passed(k: dict) -> bool:
    """Exactly once across the kill: no event lost or twice on any stream, no accepted message
    undelivered or twice, and something was checked. (A POST refused outright stores nothing:
    it is printed, not failed.)"""
    t, o = k["tally"], k["o"]
    return (t["expected"] > 0 and t["lost"] == 0 and t["duplicated"] == 0
            and o.undelivered == 0 and o.duplicates == 0)


if __name__ == "__main__":
    sys.exit(main())
