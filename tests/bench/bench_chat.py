"""Live chat benchmark: the real server (uvicorn, one process, wrapped by probed_asgi for the
event-loop and garbage-collection probes) and a real Huey consumer on a database of 100,000
conversations / 1,000,000 messages, driven over loopback by the load client (chat_client.py:
several processes holding real SSE streams and posting through the widget's and the
dashboard's own endpoints). Every figure of issue 10's goal list is printed beside its goal
(chat_report.py), beside floors measured in the same run: a bare Starlette + a2wsgi Flask
insert and an idle sse-starlette stream (floor_app.py), and an in-memory chat (null_chat.py),
which also measures the load client's own ceiling.

`python tests/bench/bench_chat.py [--quick] [--clients N] [--asgi module:app]`: progress on
stderr, tables on stdout. --quick: small data set and short runs (under 3 minutes), for
development; its figures are not the goals' conditions. Given --workers N, --database-url or
--redis-url, it hands over to bench_chat_cluster.py (several web processes on PostgreSQL + Redis).
"""

import argparse
import asyncio
import gzip
import html
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import fill_chat  # noqa: E402
from tests.bench import sse_client as hc  # noqa: E402
from tests.bench.chat_client import (  # noqa: E402,F401  (re-exported for bench_chat_automations)
    KEY,
    POOL,
    POST_TIMEOUT,
    Load,
    Outcomes,
    Tracker,
    make_stream,
    uvloop,
)
from tests.bench.chat_report import goal, report  # noqa: E402,F401
from tests.bench.harness import ROOT, cpu_seconds, percentile, rss_kb, run_server, settle  # noqa: E402

FULL = dict(
    conversations=fill_chat.CONVERSATIONS, messages=fill_chat.MESSAGES,
    streams=(1000, 10000),  # idle streams: the first is the load's count, the last the memory goal's
    rate=100, seconds=30,  # figure 1
    steps=(200, 400, 800, 1200, 1600, 2000, 2500, 3000), below=(100, 50, 10), step_seconds=5,
    ceiling_steps=(500, 1000, 2000, 3000, 4000, 5000), ceiling_below=(250, 100), ceiling_seconds=3,
    idle_seconds=10, restart_rate=20, restart_before=5, restart_down=20, restart_after=30,
    page_requests=200, page_seconds=10, floor_seconds=10, widget_visitors=5,
    open_deadline=60, settle=10,
)
QUICK = dict(
    conversations=10_000, messages=100_000, streams=(200, 1000), rate=100, seconds=5,
    steps=(200, 400, 800, 1600), below=(100, 10), step_seconds=2,
    ceiling_steps=(500, 1000, 2000, 3000), ceiling_below=(250, 100), ceiling_seconds=2,
    idle_seconds=3, restart_rate=20, restart_before=2, restart_down=15, restart_after=8,
    page_requests=40, page_seconds=3, floor_seconds=2, widget_visitors=3,
    open_deadline=30, settle=3,
)
SSE_CONNECT = re.compile(r'sse-connect="([^"]+)"')
CSRF_META = re.compile(r'"X-CSRFToken":\s*"([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
COOKIE = "lumnar_session"
ENV = {"LUMNAR_SECRET_KEY": fill_chat.SECRET_KEY, "LUMNAR_MASTER_KEYS": fill_chat.MASTER_KEYS,
       "LUMNAR_RATELIMIT": "0", "LUMNAR_ENV": "production"}


def log(msg: str) -> None:
    print(f"[chat {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ms(ns: float) -> float:
    return ns / 1e6


# --- data set-up, before the server starts ---------------------------------------------------


def seed(data_dir: Path, visitors: int, extra_streams: int):
    """Open conversations for the load (written straight to the copied database, as a visitor's
    first message would leave them), and stream tickets for `extra_streams` filled conversations.
    Tokens and tickets are signed by the app's own functions with the server's key."""
    from app import create_app
    from app.chat import events, live, service
    from app.chat.models import Conversation, Message
    from app.db import connection, database
    from app.widget import service as widget_service
    from app.widget.models import Site, Visitor

    app = create_app({"ENV_NAME": "development", "DATA_DIR": data_dir,
                      "SECRET_KEY": fill_chat.SECRET_KEY, "MASTER_KEYS": fill_chat.MASTER_KEYS})
    loaders, extra = [], []
    with app.app_context(), connection():
        with database.atomic():
            site = Site.get(Site.site_key == KEY)
            for i in range(visitors):
                v = Visitor.create(site=site, email=f"load{i}@visitor.example",
                                   first_page_url="http://127.0.0.1/shop")
                c = Conversation.create(workspace=site.workspace_id, site=site, visitor=v,
                                        last_preview="Hello, a question about my parcel",
                                        unread_count=1)
                m = Message.create(conversation=c, workspace_id=site.workspace_id, sender="visitor",
                                   body="Hello, a question about my parcel")
                e = live.Written(None, site.workspace_id, c.id, "message", m.id, "visitor")
                events.record([e], tell=False)
                loaders.append(dict(token=widget_service.visitor_token(v), conversation=c.id,
                                    path=f"/sse/visitor?ticket={widget_service.stream_ticket(c, v)}&after={e.seq}"))
        rows = list(Conversation.select(Conversation.id, Conversation.workspace, Visitor.public_id)
                    .join(Visitor).where(Conversation.id <= extra_streams)
                    .order_by(Conversation.id).tuples())
        last = dict(database.execute_sql(
            "SELECT conversation_id, MAX(seq) FROM chat_event WHERE conversation_id <= ? "
            "GROUP BY conversation_id", (extra_streams,)).fetchall())
        for cid, workspace_id, public_id in rows:
            ticket = widget_service.stream_ticket(
                type("C", (), {"id": cid, "workspace_id": workspace_id})(),
                type("V", (), {"public_id": public_id})())
            extra.append(f"/sse/visitor?ticket={ticket}&after={last.get(cid, 0)}")
        # Indexed for search as the worker would have done within its minute: the searches
        # below measure a steady state, not the first catch-up after these inserts.
        while service.index_new_messages():
            pass
    database.close()
    return loaders, extra


# --- the two sides ---------------------------------------------------------------------------


class Agent:
    def __init__(self, port):
        self.port = port
        self.cookie = ""
        self.csrf = ""
        self.after = 0

    def headers(self, **extra):
        return {"Cookie": f"{COOKIE}={self.cookie}", **extra}

    def keep(self, response):
        if COOKIE in response.cookies:
            self.cookie = response.cookies[COOKIE]

    async def log_in(self):
        conn = hc.Connection(self.port)
        r = await conn.request("GET", "/login")
        self.keep(r)
        token = CSRF_INPUT.search(r.text) or CSRF_META.search(r.text)
        r = await conn.request("POST", "/login", self.headers(), hc.form(dict(
            email=fill_chat.EMAIL, password=fill_chat.PASSWORD, csrf_token=token.group(1), website="")))
        self.keep(r)
        if r.status not in (200, 302, 303) or not self.cookie:
            raise RuntimeError(f"log-in failed: {r.status} {r.text[:300]}")
        r = await conn.request("GET", "/dashboard/inbox", self.headers(), timeout=60)
        self.keep(r)
        if r.status != 200:
            raise RuntimeError(f"inbox after log-in: {r.status}")
        self.csrf = CSRF_META.search(r.text).group(1)
        stream = html.unescape(SSE_CONNECT.search(r.text).group(1))
        self.after = int(parse_qs(urlsplit(stream).query)["after"][0])
        conn.close()


def ticket_conversation(ticket: str) -> int:
    from itsdangerous import URLSafeTimedSerializer

    _, payload = URLSafeTimedSerializer("unused").loads_unsafe(ticket)
    return int(payload["c"])


async def widget_visitor(port: int, i: int, statuses: dict):
    """A visitor started exactly as the widget does: token, first message with e-mail (the team
    may be away), and the chat fragment that carries the stream URL. A refused first message is
    counted in `statuses` and sent again (as the visitor would), up to 3 times.
    Returns (loader or None, seconds the accepted first message took)."""
    conn = hc.Connection(port)
    try:
        r = await conn.request("POST", f"/widget/{KEY}/visitors", {"HX-Request": "true"},
                               hc.form({"page": "http://127.0.0.1/shop"}), timeout=60)
        token = json.loads(r.body)["token"]
        for _ in range(3):
            t0 = time.perf_counter()
            r = await conn.request("POST", f"/widget/{KEY}/messages",
                                   {"X-Lumnar-Visitor": token, "HX-Request": "true"},
                                   hc.form({"body": "Hello, is anyone there?",
                                            "email": f"widget{i}@visitor.example"}), timeout=60)
            first = time.perf_counter() - t0
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status == 200:
                break
            await asyncio.sleep(0.5)
        else:
            return None, None
        r = await conn.request("GET", f"/widget/{KEY}/chat", {"X-Lumnar-Visitor": token, "HX-Request": "true"},
                               timeout=60)
        found = SSE_CONNECT.search(r.text)
        if r.status != 200 or not found:
            raise RuntimeError(f"/chat has no stream: {r.status} {r.text[:300]}")
        path = html.unescape(found.group(1))
        ticket = parse_qs(urlsplit(path).query)["ticket"][0]
        return dict(token=token, conversation=ticket_conversation(ticket), path=path), first
    finally:
        conn.close()



# --- floors ---------------------------------------------------------------------------------


async def floor_insert(port, rate, seconds, conns=16, max_seconds=3.0, path="/insert"):
    """Latency of the bare insert at the figure-1 rate, then its closed-loop maximum rate."""
    lat = []
    pool = asyncio.Queue()
    for _ in range(POOL):
        pool.put_nowait(hc.Connection(port))
    tasks = set()

    async def one(conn, n):
        sent = []
        try:
            r = await conn.request("POST", path, {}, hc.form({"body": f"bench mk{n:07d}x hello"}),
                                   POST_TIMEOUT, on_sent=sent.append)
            if r.status == 200:
                lat.append(ms(time.perf_counter_ns() - sent[0]))
        finally:
            pool.put_nowait(conn)

    started = time.perf_counter()
    total = int(rate * seconds)
    i = 0
    while i < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while i < due and not pool.empty():
            i += 1
            t = asyncio.ensure_future(one(pool.get_nowait(), i))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
    if tasks:
        await asyncio.wait(tasks, timeout=POST_TIMEOUT)
    lat.sort()

    done = 0
    stop = time.perf_counter() + max_seconds

    async def hammer():
        nonlocal done
        conn = hc.Connection(port)
        while time.perf_counter() < stop:
            r = await conn.request("POST", path, {}, hc.form({"body": "bench hello"}), POST_TIMEOUT)
            if r.status == 200:
                done += 1
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(hammer() for _ in range(conns)))
    max_rate = done / (time.perf_counter() - t0)
    return lat, max_rate


async def page_times(port, path, headers, requests, seconds):
    """Sequential GETs on one connection: latencies of the 200 answers (sorted) and every status."""
    conn = hc.Connection(port)
    out, statuses = [], {}
    stop = time.perf_counter() + seconds
    while sum(statuses.values()) < requests and time.perf_counter() < stop:
        t0 = time.perf_counter_ns()
        try:
            r = await conn.request("GET", path, headers, timeout=60)
            status = r.status
        except (TimeoutError, OSError, hc.HTTPError, asyncio.IncompleteReadError) as exc:
            status = type(exc).__name__
        if status == 200:  # an error answer is counted, never timed
            out.append(ms(time.perf_counter_ns() - t0))
        statuses[status] = statuses.get(status, 0) + 1
    conn.close()
    out.sort()
    return out, statuses


async def widget_bytes(port):
    """Bytes of a first open (bodies, gzip asked for). Returns (total, loader, compressed, parts)."""
    conn = hc.Connection(port)
    gz_headers = {"Accept-Encoding": "gzip"}
    compressed = True
    parts = {}

    async def fetch(path):
        nonlocal compressed
        r = await conn.request("GET", path, gz_headers)
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status}")
        if r.headers.get("content-encoding", "").lower() == "gzip":
            parts[path] = len(r.body)
            return gzip.decompress(r.body)
        compressed = False
        parts[path] = len(gzip.compress(r.body, 6))
        return r.body

    await fetch("/widget.js")
    page = (await fetch(f"/widget/{KEY}")).decode()
    for ref in re.findall(r'<(?:link[^>]+href|script[^>]+src)="([^"]+)"', page):
        ref = html.unescape(ref)
        if ref.startswith("/") and not ref.startswith("//"):
            await fetch(ref)
    conn.close()
    return sum(parts.values()), parts["/widget.js"], compressed, parts


def vendor_floor() -> int:
    vendor = ROOT / "static" / "vendor"
    return sum(len(gzip.compress(f.read_bytes(), 6)) for f in (vendor / "htmx.min.js", vendor / "sse.min.js"))


# --- Lumnar -------------------------------------------------------------------------------------


def server_errors(path: Path) -> list:
    """The last line of each traceback in the servers' output, counted, most frequent first."""
    counts: dict = {}
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                j += 1
            if j < len(lines):
                last = lines[j][:160]
                counts[last] = counts.get(last, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])




# --- phases ---------------------------------------------------------------------------------


def probe(port: int, query: str = "") -> dict:
    """The probed server's event-loop lag and garbage-collection figures (probed_asgi.py)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/__bench/probe?{query}")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def idle_paths(n: int) -> list:
    return [{"path": "/sse/idle"}] * n


def open_and_weigh(load, pid, p, batches) -> tuple[dict, dict]:
    """Open streams in batches ((group, loaders, agent_stream, keep, target count), ...) and
    weigh the server after each: ({count: (KB per open stream, open)}, {count: opened per s})."""
    load.open("warm", batches[0][1][:100], keep=False)  # first-use costs out of the figure
    load.close("warm")
    settle(pid, p["settle"])
    base, total = rss_kb(pid), 0
    memory, rates = {}, {}
    for group, loaders, agent_stream, keep, n in batches:
        res = load.open(group, loaders, agent_stream=agent_stream, keep=keep, deadline=p["open_deadline"])
        total += res["open"]
        rates[n] = res["open"] / res["seconds"] if res["seconds"] else float("nan")
        settle(pid, p["settle"])
        memory[n] = ((rss_kb(pid) - base) / max(1, total), total)
        log(f"{group}: {res['counts']} in {res['seconds']:.1f} s; {total:,} open, "
            f"{memory[n][0]:.1f} KB each")
    return memory, rates


def floor_phase(p, clients) -> dict:
    f = {}
    with run_server("tests.bench.floor_app:app") as floor:
        load = Load(floor.port, clients, None)
        try:
            counts = p["streams"]
            batches = [(f"idle{i}", idle_paths(n - (counts[i - 1] if i else 0)), False, False, n)
                       for i, n in enumerate(counts)]
            f["memory"], f["open_rate"] = open_and_weigh(load, floor.pid, p, batches)
            for group, *_ in batches:
                load.close(group)
        finally:
            load.shutdown()
        settle(floor.pid, p["settle"])
        f["insert_lat"], f["insert_max"] = asyncio.run(floor_insert(floor.port, p["rate"], p["floor_seconds"]))
        log(f"floor insert: p99 {percentile(f['insert_lat'], .99):.2f} ms at {p['rate']}/s; "
            f"max {f['insert_max']:,.0f}/s")
        _, f["asgi_insert_max"] = asyncio.run(floor_insert(floor.port, p["rate"], p["floor_seconds"],
                                                           path="/insert-asgi"))
        f["page"], _ = asyncio.run(page_times(floor.port, "/healthz", {}, p["page_requests"], p["page_seconds"]))
    return f


def measured(load, pid, port, rate, seconds, loaders, p, probed=True):
    """One run at `rate`: (Outcomes, server CPU ms per message sent, probe figures)."""
    settle(pid, p["settle"])
    if probed:
        probe(port, "reset=1")
    c0 = cpu_seconds(pid)
    o = load.drive(rate, seconds, loaders)
    cpu = (cpu_seconds(pid) - c0) * 1000 / o.sent if o.sent else None
    snap = probe(port) if probed else None
    log(f"{o.line()}, CPU {cpu if cpu is None else round(cpu, 2)} ms/msg, "
        f"lag p99 {snap and snap['lag_p99']} max {snap and snap['lag_max']} ms")
    return o, cpu, snap


def stepping(up, down, run_one) -> list:
    """Up through `up` while each step is sustained; when the first is not, down through
    `down` until one is. run_one(rate) -> a tuple whose first item is the run's Outcomes."""
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


def step_rates(load, pid, port, p, loaders) -> list:
    return stepping(p["steps"], p["below"],
                    lambda rate: measured(load, pid, port, rate, p["step_seconds"], loaders, p))


def restart_under_load(server, load, p, loaders) -> dict:
    """kill -9 while the load runs; the streams reconnect with Last-Event-ID."""
    settle(server.pid, p["settle"])
    out = {}
    # Long enough to cover `restart_after` seconds after the process answers again, for a
    # restart of up to `restart_down` s; the report says how much of that window was covered.
    seconds = p["restart_before"] + p["restart_down"] + p["restart_after"]
    # A message accepted just before the kill arrives after the restart: it is lost only if it
    # never arrives, so the deadline here spans the longest restart allowed.
    deadline = p["restart_down"] + 10
    runner = threading.Thread(target=lambda: out.update(o=load.drive(p["restart_rate"], seconds, loaders, deadline)))
    runner.start()
    time.sleep(0.3 + p["restart_before"])
    killed, answered = server.kill_and_restart()
    log(f"killed; answering again after {answered - killed:.1f} s")
    runner.join()
    state = load.streams_state("visitors")
    back = [t for t in state["back_at"] if t is not None and t >= killed]
    whole = out["o"]
    covered = min(p["restart_after"], whole.wall0 + seconds - answered)
    after = Outcomes(whole.rate, covered, whole.parts, since=answered, until=answered + p["restart_after"])
    res = dict(streams=state["total"], back=len(back), down_s=answered - killed, whole=whole, after=after,
               covered=covered,
               back_s=(max(back) - answered) if back else None)
    log(f"restart: {len(back)} of {state['total']} streams back, last {res['back_s']} s after answering; "
        f"after: {after.line()}")
    return res


def lumnar_phase(server, p, loaders, extra_paths, clients) -> dict:
    port, r = server.port, {}
    log("widget bytes, log-in, pages")
    r["bytes"] = asyncio.run(widget_bytes(port))
    agent = Agent(port)
    asyncio.run(agent.log_in())
    cookie = agent.headers()
    for key, path in (("inbox", "/dashboard/inbox"), ("search_rare", f"/dashboard/inbox?q={fill_chat.RARE_WORD}"),
                      ("search_common", f"/dashboard/inbox?q={fill_chat.COMMON_WORD}")):
        r[key] = asyncio.run(page_times(port, path, cookie, p["page_requests"], p["page_seconds"]))
        log(f"{path}: p99 {percentile(r[key][0], .99):.1f} ms {r[key][1]}")

    async def visitors():
        statuses: dict = {}
        started = await asyncio.gather(*(widget_visitor(port, i, statuses) for i in range(p["widget_visitors"])))
        return [s for s in started if s[0] is not None], statuses

    started, r["first_statuses"] = asyncio.run(visitors())
    r["first_message"] = sorted(1000 * t for _, t in started)
    loaders = [ld for ld, _ in started] + loaders[: p["streams"][0] - len(started)]

    load = Load(port, clients, dict(cookie=agent.cookie, csrf=agent.csrf, after=agent.after))
    try:
        n0 = p["streams"][0]
        extra = [{"path": path} for path in extra_paths[: p["streams"][-1] - n0]]
        batches = [("visitors", loaders, True, True, n0)]
        if len(p["streams"]) > 1:
            batches.append(("extra", extra, False, False, p["streams"][-1]))
        r["memory"], r["open_rate"] = open_and_weigh(load, server.pid, p, batches)
        load.close("extra")
        r["open"] = {n0: load.streams_state("visitors")["open"]}
        r["agent_streams"] = clients

        # Idle: the streams of the load open, nobody talking, the lag probe paused.
        probe(port, "run=0")
        settle(server.pid, p["settle"])
        c0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(p["idle_seconds"])
        r["idle_cpu"] = 100 * (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0)
        r["idle_streams"] = load.streams_state("visitors")["open"]
        probe(port, "run=1")
        log(f"idle: {r['idle_cpu']:.1f} % of a core with {r['idle_streams']} streams")

        log(f"figure 1: {p['rate']} msg/s for {p['seconds']} s")
        r["fig1"], r["fig1_cpu_ms"], r["probe1"] = measured(load, server.pid, port, p["rate"], p["seconds"], loaders, p)
        log("figure 2: stepping the rate")
        r["steps"] = step_rates(load, server.pid, port, p, loaders)
        log("restart under load")
        r["restart"] = restart_under_load(server, load, p, loaders)
    finally:
        load.shutdown()
    return r


def ceiling_phase(p, loaders, clients) -> tuple[list, dict]:
    """The load client's own ceiling: the same load against the in-memory chat."""
    steps, cpu = [], {}
    with run_server("tests.bench.null_chat:app") as null:
        load = Load(null.port, clients, None)
        try:
            load.open("visitors", loaders, agent_stream=True, deadline=p["open_deadline"])

            def run_one(rate):
                settle(null.pid, 5)
                pids = [null.pid] + [proc.pid for proc in load.procs]
                c0, t0 = [cpu_seconds(x) for x in pids], time.monotonic()
                o = load.drive(rate, p["ceiling_seconds"], loaders)
                used = [100 * (cpu_seconds(x) - c) / (time.monotonic() - t0) for x, c in zip(pids, c0, strict=True)]
                cpu[rate] = (used[0], sum(used[1:]))
                log(f"client ceiling: {o.line()}; CPU server {used[0]:.0f} %, clients {sum(used[1:]):.0f} %")
                return (o,)

            steps = [s[0] for s in stepping(p["ceiling_steps"], p["ceiling_below"], run_one)]
        finally:
            load.shutdown()
    return steps, cpu


def main():
    if any(arg.split("=", 1)[0] in ("--workers", "--database-url", "--redis-url") for arg in sys.argv[1:]):
        # Several web processes on PostgreSQL + Redis (issue 12): the cluster benchmark.
        from tests.bench import bench_chat_cluster

        sys.exit(bench_chat_cluster.main())
    parser = argparse.ArgumentParser(description="Live chat benchmark.")
    parser.add_argument("--quick", action="store_true", help="small data set and short runs (< 3 min)")
    parser.add_argument("--clients", type=int, default=2, help="load client processes (default 2)")
    parser.add_argument("--asgi", default="app.asgi:app",
                        help="the ASGI app to measure (to try a candidate change; default app.asgi:app)")
    args = parser.parse_args()
    p = QUICK if args.quick else FULL
    signal.alarm(300 if args.quick else 2400)  # a run that hangs stops by itself
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers and clients
    if hard < p["streams"][-1] + 1000:  # the server holds every stream; each client its share
        log(f"warning: file-descriptor limit {hard} is low for {p['streams'][-1]} streams")
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]
    log(f"load average at the start: {load_before:.2f}")

    fill_chat.filled_db(p["conversations"], p["messages"])
    log("floors: bare Starlette + a2wsgi Flask (floor_app.py)")
    f = floor_phase(p, args.clients)

    data = Path(tempfile.mkdtemp(prefix="lumnar-bench-chat-"))
    try:
        fill_chat.prepare(data, p["conversations"], p["messages"])
        loaders, extra = seed(data, p["streams"][0], p["streams"][-1] + 100)
        log(f"seeded {len(loaders)} open conversations; starting uvicorn + huey_consumer")
        server_log = data / "server.log"
        with run_server("tests.bench.probed_asgi:app", env={**ENV, "LUMNAR_BENCH_TARGET": args.asgi},
                        data=str(data), worker=True, ready_timeout=60, log=str(server_log)) as lumnar:
            r = lumnar_phase(lumnar, p, loaders, extra, args.clients)
        r["server_errors"] = server_errors(server_log)
        if r["server_errors"]:
            keep = ROOT / "data" / "bench" / "last-server.log"
            shutil.copyfile(server_log, keep)
            log(f"server output kept in {keep.relative_to(ROOT)}")
        log("client ceiling: the same load against an in-memory chat (null_chat.py)")
        r["ceiling"], r["ceiling_cpu"] = ceiling_phase(p, loaders, args.clients)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    r.update(floor=f, quick=args.quick, cores=os.cpu_count(), clients=args.clients,
             uvloop=uvloop is not None, elapsed=time.monotonic() - t_start,
             load=(load_before, os.getloadavg()[0]))
    log(f"done in {r['elapsed']:.0f} s; load average at the end: {r['load'][1]:.2f}")
    report(p, r)


if __name__ == "__main__":
    main()
