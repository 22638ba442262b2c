"""Live chat benchmark: the real server (uvicorn, one process) and a real Huey consumer on a
database of 100,000 conversations / 1,000,000 messages, driven over loopback by a client that
holds real SSE streams and posts through the widget's and the dashboard's own endpoints.

Every figure is printed beside a floor measured in the same run:
  (a) a bare Starlette + a2wsgi Flask endpoint doing one SQLite insert (floor_app POST /insert),
  (b) an idle sse-starlette stream (floor_app GET /sse/idle).

Figures: 1. delivery latency both ways with many open streams; 2. highest sustained message
rate; 3. server memory per idle stream; 4. inbox and search time; 5. widget bytes.

`python tests/bench/bench_chat.py [--quick]`: progress on stderr, tables on stdout.
"""

import argparse
import asyncio
import gc
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
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import fill_chat  # noqa: E402
from tests.bench import sse_client as hc  # noqa: E402
from tests.bench.harness import ROOT, percentile, rss_kb, run_server, settle, table  # noqa: E402

FULL = dict(
    conversations=fill_chat.CONVERSATIONS, messages=fill_chat.MESSAGES,
    streams=(1000, 5000),  # idle streams for the memory figure; the first is figure 1's count
    rate=100, seconds=30,  # figure 1
    steps=(200, 400, 800, 1200, 1600), below=(100, 50, 10), step_seconds=5,  # figure 2
    page_requests=200, page_seconds=10,  # figure 4: at most this many, for at most this long
    floor_seconds=10, widget_visitors=5,
    open_deadline=60,  # seconds to open each batch of streams; the rest are given up
    budget=200,  # seconds spent before figure 1 beyond which it runs for 15 s instead of 30
)
QUICK = dict(
    conversations=10_000, messages=100_000, streams=(200, 1000), rate=100, seconds=5,
    steps=(200, 400, 800), below=(100, 50, 10), step_seconds=2, page_requests=40, page_seconds=4,
    floor_seconds=3, widget_visitors=3, open_deadline=30, budget=1000,
)
DELIVERY_DEADLINE = 5.0  # seconds: a message not on the other side's stream by then is lost
POST_TIMEOUT = 5.0  # a POST unanswered this long could not be delivered in time either
POOL = 64  # keep-alive connections per side; a send finding all busy is counted as skipped
# A marked message's text as it appears in a rendered message (agent: class="body", visitor:
# class="w-body"); the same text in an inbox row's preview does not count as a delivery.
MARK = re.compile(rb'body">bench (mk\d{7}x)')
SSE_CONNECT = re.compile(r'sse-connect="([^"]+)"')
CSRF_META = re.compile(r'"X-CSRFToken":\s*"([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
COOKIE = "lumnar_session"
KEY = fill_chat.SITE_KEY
ENV = {"LUMNAR_SECRET_KEY": fill_chat.SECRET_KEY, "LUMNAR_MASTER_KEYS": fill_chat.MASTER_KEYS,
       "LUMNAR_RATELIMIT": "0", "LUMNAR_ENV": "production"}


def log(msg: str) -> None:
    print(f"[chat {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def ms(ns: float) -> float:
    return ns / 1e6


def fmt_ms(v: float) -> str:
    return f"{v:,.1f} ms" if v != float("inf") else "> 5 s (lost)"


def goal(ok: bool, text: str) -> str:
    return f"{text}: {'met' if ok else 'MISSED'}"


# --- data set-up, before the server starts ---------------------------------------------------


def seed(data_dir: Path, visitors: int, extra_streams: int):
    """Open conversations for the load (written straight to the copied database, as a visitor's
    first message would leave them), and stream tickets for `extra_streams` filled conversations.
    Tokens and tickets are signed by the app's own functions with the server's key."""
    from app import create_app
    from app.chat import service
    from app.chat.models import ChatEvent, Conversation, Message, Site, Visitor
    from app.db import connection, database

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
                e = ChatEvent.create(workspace_id=site.workspace_id, conversation_id=c.id,
                                     kind="message", ref_id=m.id, actor="visitor")
                loaders.append(dict(token=service.visitor_token(v), conversation=c.id,
                                    path=f"/sse/visitor?ticket={service.stream_ticket(c.id, v)}&after={e.id}"))
        rows = list(Conversation.select(Conversation.id, Visitor.public_id).join(Visitor)
                    .where(Conversation.id <= extra_streams).order_by(Conversation.id).tuples())
        last = dict(database.execute_sql(
            "SELECT conversation_id, MAX(id) FROM chat_event WHERE conversation_id <= ? "
            "GROUP BY conversation_id", (extra_streams,)).fetchall())
        for cid, public_id in rows:
            ticket = service.stream_ticket(cid, type("V", (), {"public_id": public_id})())
            extra.append(f"/sse/visitor?ticket={ticket}&after={last.get(cid, 0)}")
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


class Tracker:
    """Which marked message was sent when, and when it reached the other side's stream."""

    def __init__(self):
        self.records = {}  # marker -> [direction, target tag, sent ns, delivered ns]
        self.duplicates = 0
        self.seq = 0

    def marker(self) -> bytes:
        self.seq += 1
        return b"mk%07dx" % self.seq

    def on_event(self, stream, event, t_ns):
        if event.id is not None:
            if event.id in stream.seen:
                self.duplicates += 1
                return
            stream.seen.add(event.id)
        if b"mk" not in event.data:
            return
        for mark in set(MARK.findall(event.data)):
            rec = self.records.get(mark)
            if rec is None or rec[1] != stream.tag:
                continue
            if rec[3] is not None:
                self.duplicates += 1  # the same message again, in another event
            else:
                rec[3] = t_ns


def make_stream(port, path, tag, tracker, headers=None):
    s = hc.SSEStream(port, path, headers, on_event=tracker.on_event, tag=tag)
    s.seen = set()
    return s


async def keep_open(stream, tracker, stop: asyncio.Event, counters: dict):
    """Reconnect an ended stream with Last-Event-ID, as EventSource does (3 s by default)."""
    while not stop.is_set():
        if stream.task is not None:
            await asyncio.wait([stream.task, asyncio.ensure_future(stop.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return
        counters["reconnects"] = counters.get("reconnects", 0) + 1
        try:
            await asyncio.wait_for(stop.wait(), 3)
            return
        except TimeoutError:
            pass
        last = max(stream.seen, key=int) if stream.seen else None
        fresh = hc.SSEStream(stream.port, stream.path, {**stream.headers,
                             **({"Last-Event-ID": last} if last else {})}, stream.on_event, stream.tag)
        try:
            if await fresh.open() == 200:
                stream.reader, stream.writer, stream.head = fresh.reader, fresh.writer, fresh.head
                stream.task = None
                stream.ended = False
                stream.start()
        except (TimeoutError, OSError, hc.HTTPError, asyncio.IncompleteReadError):
            pass


async def drive(port, rate, seconds, loaders, agent, tracker, pools, progress=""):
    """Send `rate` marked messages a second for `seconds`, alternating visitor→agent (widget
    POST) and agent→visitor (dashboard POST); then wait for their delivery (at most 5 s after
    the last send, and for every POST to answer). Returns the figures of this run."""
    by_conv = {ld["conversation"]: ld for ld in loaders}
    conv_ids = list(by_conv)
    total = int(rate * seconds)
    sent = skipped = errors = 0
    statuses: dict = {}
    answered = {"v2a": [], "a2v": []}  # how long each accepted POST took to answer
    tasks = set()
    marks = []

    async def send(conn, pool, method_path, headers, body, rec):
        nonlocal errors
        try:
            r = await conn.request("POST", method_path, headers, body, POST_TIMEOUT,
                                   on_sent=lambda t: rec.__setitem__(2, t))
            if r.status >= 300:
                errors += 1
                statuses[r.status] = statuses.get(r.status, 0) + 1
            else:
                answered[rec[0]].append(ms(time.perf_counter_ns() - rec[2]))
            if pool is pools["agent"]:
                agent.keep(r)
        except Exception as exc:  # timeouts, resets: counted, the run goes on
            errors += 1
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
        finally:
            pool.put_nowait(conn)

    started = time.perf_counter()
    i = 0
    while i < total and time.perf_counter() - started < seconds + 2:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while i < due:
            i += 1
            mark = tracker.marker()
            conv = conv_ids[(i // 2) % len(conv_ids)]
            body = hc.form({"body": f"bench {mark.decode()} hello"})
            if i % 2:
                pool, target = pools["visitor"], "agent"
                path, headers = f"/widget/{KEY}/messages", {"X-Lumnar-Visitor": by_conv[conv]["token"],
                                                            "HX-Request": "true"}
            else:
                pool, target = pools["agent"], conv
                path = f"/dashboard/conversations/{conv}/messages"
                headers = agent.headers(**{"X-CSRFToken": agent.csrf, "HX-Request": "true"})
            if pool.empty():
                skipped += 1
                continue
            conn = pool.get_nowait()
            rec = [target == "agent" and "v2a" or "a2v", target, None, None]
            tracker.records[mark] = rec
            marks.append(mark)
            sent += 1
            t = asyncio.ensure_future(send(conn, pool, path, headers, body, rec))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
    window = time.perf_counter() - started
    # Deliveries: every sent message gets DELIVERY_DEADLINE from its send; POSTs get their timeout.
    wait_until = time.perf_counter() + DELIVERY_DEADLINE + POST_TIMEOUT
    while time.perf_counter() < wait_until:
        pending = [m for m in marks if tracker.records[m][3] is None]
        now_ns = time.perf_counter_ns()
        waiting = [m for m in pending if tracker.records[m][2] is None
                   or now_ns - tracker.records[m][2] < DELIVERY_DEADLINE * 1e9]
        if not tasks and not waiting:
            break
        await asyncio.sleep(0.05)
    # Percentiles are over every sent message; a lost one counts as infinitely late.
    lat = {"v2a": [], "a2v": []}
    lost = {"v2a": 0, "a2v": 0}
    for m in marks:
        direction, _, t_sent, t_got = tracker.records.pop(m)
        if t_sent is None or t_got is None or t_got - t_sent > DELIVERY_DEADLINE * 1e9:
            lost[direction] += 1
            lat[direction].append(float("inf"))
        else:
            lat[direction].append(ms(t_got - t_sent))
    for v in lat.values():
        v.sort()
    both = sorted(lat["v2a"] + lat["a2v"])
    for v in answered.values():
        v.sort()
    result = dict(rate=rate, sent=sent, answered=answered, skipped=skipped, errors=errors, statuses=statuses,
                  achieved=sent / window if window else 0, lat=lat, all=both, lost=lost,
                  lost_total=lost["v2a"] + lost["a2v"])
    log(f"{progress}{rate} msg/s × {seconds:g} s: sent {sent}, skipped {skipped} (pool busy), "
        f"errors {errors} {statuses or ''}, lost {result['lost_total']}, "
        f"p50 {fmt_ms(percentile(both, .5))}, p99 {fmt_ms(percentile(both, .99))}")
    return result


def new_pools(port):
    pools = {"visitor": asyncio.Queue(), "agent": asyncio.Queue()}
    for q in pools.values():
        for _ in range(POOL):
            q.put_nowait(hc.Connection(port))
    return pools


# --- floors ---------------------------------------------------------------------------------


async def floor_memory(port, pid, counts, deadline):
    per, rates = {}, {}
    warm = [hc.SSEStream(port, "/sse/idle") for _ in range(100)]
    await hc.open_streams(warm)
    await hc.close_streams(warm)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(settle, pid)
    base = rss_kb(pid)
    streams = []
    for n in counts:
        more = [hc.SSEStream(port, "/sse/idle") for _ in range(n - len(streams))]
        t0 = time.perf_counter()
        opened = await hc.open_streams(more, deadline=deadline)
        rates[n] = sum(1 for s in more if s.task is not None) / (time.perf_counter() - t0)
        streams += more
        await asyncio.to_thread(settle, pid)
        n_open = sum(1 for s in streams if s.task is not None)
        per[n] = ((rss_kb(pid) - base) / max(1, n_open), n_open)
        log(f"floor: {n} idle streams {opened}, {per[n][0]:.1f} KB each")
    await hc.close_streams(streams)
    return per, rates


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
    conn = hc.Connection(port)
    out, statuses = [], {}
    stop = time.perf_counter() + seconds
    while len(out) < requests and time.perf_counter() < stop:
        t0 = time.perf_counter_ns()
        r = await conn.request("GET", path, headers, timeout=60)
        out.append(ms(time.perf_counter_ns() - t0))
        statuses[r.status] = statuses.get(r.status, 0) + 1
    conn.close()
    out.sort()
    return out, statuses


async def floor_phase(port, pid, p):
    f = {}
    f["memory"], f["open_rate"] = await floor_memory(port, pid, p["streams"], p["open_deadline"])
    await asyncio.to_thread(settle, pid)
    f["insert_lat"], f["insert_max"] = await floor_insert(port, p["rate"], p["floor_seconds"])
    log(f"floor insert: p50 {percentile(f['insert_lat'], .5):.2f} ms, p99 "
        f"{percentile(f['insert_lat'], .99):.2f} ms at {p['rate']}/s; max {f['insert_max']:,.0f}/s")
    f["asgi_insert_lat"], f["asgi_insert_max"] = await floor_insert(
        port, p["rate"], p["floor_seconds"], path="/insert-asgi")
    log(f"floor insert from Starlette itself: max {f['asgi_insert_max']:,.0f}/s")
    f["page"], _ = await page_times(port, "/healthz", {}, p["page_requests"], p["page_seconds"])
    return f


# --- widget bytes -------------------------------------------------------------------------------


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


async def lumnar_phase(port, pid, p, loaders, extra_paths, t_start):
    r = {}
    log("widget bytes")
    r["bytes"] = await widget_bytes(port)

    agent = Agent(port)
    await agent.log_in()
    log(f"agent logged in; dashboard stream after={agent.after}")
    cookie = agent.headers()
    log("inbox and search times (client-observed, one keep-alive connection)")
    r["inbox"], st1 = await page_times(port, "/dashboard/inbox", cookie, p["page_requests"], p["page_seconds"])
    r["search_rare"], st2 = await page_times(port, f"/dashboard/inbox?q={fill_chat.RARE_WORD}", cookie,
                                             p["page_requests"], p["page_seconds"])
    r["search_common"], st3 = await page_times(port, f"/dashboard/inbox?q={fill_chat.COMMON_WORD}", cookie,
                                               p["page_requests"], p["page_seconds"])
    for key, what, st in (("inbox", "inbox", st1), ("search_rare", f"search '{fill_chat.RARE_WORD}'", st2),
                          ("search_common", f"search '{fill_chat.COMMON_WORD}'", st3)):
        log(f"{what}: p50 {percentile(r[key], .5):.1f} ms ({len(r[key])} requests {st})")

    log(f"{p['widget_visitors']} visitors through the widget's own start (token, first message, /chat)")
    statuses: dict = {}
    started = await asyncio.gather(*(widget_visitor(port, i, statuses)
                                     for i in range(p["widget_visitors"])))
    started = [(ld, t) for ld, t in started if ld is not None]
    r["first_message"] = sorted(t for _, t in started)
    r["first_statuses"] = statuses
    loaders = [ld for ld, _ in started] + loaders[: p["streams"][0] - len(started)]
    log(f"first message through the widget: {statuses}, accepted ones took p50 "
        f"{1000 * percentile(r['first_message'], .5):.0f} ms")

    tracker = Tracker()
    stop = asyncio.Event()
    counters: dict = {}
    agent_stream = make_stream(port, f"/sse/dashboard?after={agent.after}", "agent", tracker, agent.headers())
    if await agent_stream.open() != 200:
        raise RuntimeError(f"dashboard stream: {agent_stream.status}")
    agent_stream.start()
    keepers = [asyncio.ensure_future(keep_open(agent_stream, tracker, stop, counters))]

    # Figure 3: memory per idle stream (after a warm-up that opens and closes 100, as on the floor).
    warm = [make_stream(port, path, None, tracker) for path in extra_paths[-100:]]
    await hc.open_streams(warm)
    await hc.close_streams(warm)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(settle, pid)
    base = rss_kb(pid)
    log(f"baseline RSS {base:,} kB, server threads {threads(pid)}")
    visitor_streams = [make_stream(port, ld["path"], ld["conversation"], tracker) for ld in loaders]
    t0 = time.perf_counter()
    opened = await hc.open_streams(visitor_streams, deadline=p["open_deadline"])
    n_open = sum(1 for s in visitor_streams if s.task is not None)
    r["open_rate"] = {p["streams"][0]: n_open / (time.perf_counter() - t0)}
    log(f"opened in {time.perf_counter() - t0:.1f} s; settling")
    await asyncio.to_thread(settle, pid)
    r["memory"] = {p["streams"][0]: ((rss_kb(pid) - base) / max(1, n_open), n_open)}
    log(f"{len(visitor_streams)} visitor streams {opened}: {r['memory'][p['streams'][0]][0]:.1f} KB each "
        f"(server threads {threads(pid)})")
    n_extra = p["streams"][1] - len(visitor_streams)
    extra = [make_stream(port, path, None, tracker) for path in extra_paths[:min(n_extra, len(extra_paths) - 100)]]
    t0 = time.perf_counter()
    opened = await hc.open_streams(extra, deadline=p["open_deadline"])
    r["open_rate"][p["streams"][1]] = sum(1 for s in extra if s.task is not None) / (time.perf_counter() - t0)
    await asyncio.to_thread(settle, pid)
    n_all = sum(1 for s in visitor_streams + extra if s.task is not None)
    r["memory"][p["streams"][1]] = ((rss_kb(pid) - base) / max(1, n_all), n_all)
    log(f"{n_all} visitor streams open ({opened} for the last {len(extra)}): "
        f"{r['memory'][p['streams'][1]][0]:.1f} KB each "
        f"(server threads {threads(pid)})")
    await hc.close_streams(extra)
    await asyncio.to_thread(settle, pid)
    keepers += [asyncio.ensure_future(keep_open(s, tracker, stop, counters))
                for s in visitor_streams if s.task is not None]

    # Figure 1: delivery latency at a steady rate (15 s instead of 30 when the run is long already).
    gc.collect()
    gc.freeze()  # fewer client-side collection pauses during the timed part
    pools = new_pools(port)
    seconds = p["seconds"]
    if time.monotonic() - t_start > p["budget"] and seconds > 15:
        seconds = 15
    r["fig1_seconds"] = seconds
    log(f"figure 1: {p['rate']} msg/s for {seconds} s with {len(visitor_streams)} visitor streams open")
    dup0 = tracker.duplicates
    r["fig1"] = await drive(port, p["rate"], seconds, loaders, agent, tracker, pools)
    r["fig1"]["duplicates"] = tracker.duplicates - dup0

    # Figure 2: step the rate up (or, when the first step fails, down) until p99 > 100 ms or a loss.
    steps = await step_rates(port, pid, p, loaders, agent, tracker, pools, "figure 2")
    r["steps"] = steps
    r["reconnects"] = counters.get("reconnects", 0)
    stop.set()
    await asyncio.wait(keepers, timeout=5)
    await hc.close_streams(visitor_streams + [agent_stream])
    for q in pools.values():
        while not q.empty():
            q.get_nowait().close()
    return r


async def step_rates(port, pid, p, loaders, agent, tracker, pools, label, seconds=None):
    """Figure 2's stepping: up through p["steps"] while each step is sustained; when the first
    fails, down through p["below"] until one is."""
    steps = []

    async def step(rate, note):
        await asyncio.to_thread(settle, pid, 10)
        dup0 = tracker.duplicates
        res = await drive(port, rate, seconds or p["step_seconds"], loaders, agent, tracker, pools,
                          f"{label}{note}: ")
        res["duplicates"] = tracker.duplicates - dup0
        res["ok"] = sustained(res)
        steps.append(res)
        return res["ok"]

    for rate in p["steps"]:
        if not await step(rate, ""):
            break
    if steps and not steps[0]["ok"]:
        for rate in p["below"]:
            if await step(rate, " (lower)"):
                break
    return steps


async def null_phase(port, pid, p, loaders):
    """The load client's own ceiling: figure 2's stepping against null_chat (in memory)."""
    tracker = Tracker()
    agent = Agent(port)
    agent.cookie = agent.csrf = "unused"
    agent_stream = make_stream(port, "/sse/dashboard", "agent", tracker)
    await agent_stream.open()
    agent_stream.start()
    streams = [make_stream(port, ld["path"], ld["conversation"], tracker) for ld in loaders]
    await hc.open_streams(streams, deadline=p["open_deadline"])
    gc.collect()
    gc.freeze()
    pools = new_pools(port)
    steps = await step_rates(port, pid, p, loaders, agent, tracker, pools, "client ceiling",
                             seconds=min(3, p["step_seconds"]))
    await hc.close_streams(streams + [agent_stream])
    return steps


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


def sustained(res) -> bool:
    return (res["lost_total"] == 0 and res["errors"] == 0 and res["skipped"] == 0
            and res["duplicates"] == 0 and percentile(res["all"], .99) <= 100
            and res["achieved"] >= 0.95 * res["rate"])


# --- report -------------------------------------------------------------------------------------


def report(p, f, r, quick):
    scale = f"{p['conversations']:,} conversations / {p['messages']:,} messages"
    print(f"\nLive chat benchmark{' (QUICK)' if quick else ''}: {os.cpu_count()} cores, whole run "
          f"{r['elapsed']:.0f} s, load average {r['load'][0]:.1f} at the start and {r['load'][1]:.1f} "
          "at the end (anything above ~1 means other work shared the machine).")
    fig1 = r["fig1"]
    n1 = p["streams"][0]
    rows = []
    for d, label in (("v2a", "visitor → agent"), ("a2v", "agent → visitor")):
        for q, name in ((.5, "p50"), (.95, "p95"), (.99, "p99")):
            v = percentile(fig1["lat"][d], q)
            shown = v if v != float("inf") else f"> {DELIVERY_DEADLINE * 1000:,.0f} ms (lost)"
            rows.append((f"{label} delivery {name} ({len(fig1['lat'][d]):,} sent)", shown,
                         percentile(f["insert_lat"], q), "ms",
                         goal(v <= 3, "≤ 3 ms") if name == "p99" else ""))
    for d, label in (("v2a", "widget POST /widget/<key>/messages"),
                     ("a2v", "dashboard POST /dashboard/conversations/<id>/messages")):
        for q, name in ((.5, "p50"), (.99, "p99")):
            rows.append((f"{label} answered {name} (2xx only, {len(fig1['answered'][d]):,})",
                         percentile(fig1["answered"][d], q), percentile(f["insert_lat"], q), "ms", ""))
    rows += [
        ("messages sent (of scheduled)", f"{fig1['sent']:,} of {fig1['sent'] + fig1['skipped']:,}", None, "",
         goal(fig1["skipped"] == 0, "all sent")),
        ("POSTs not answered 2xx", fig1["errors"], None, "", goal(fig1["errors"] == 0, "0")),
        ("lost (not delivered within 5 s)", fig1["lost_total"], None, "", goal(fig1["lost_total"] == 0, "0")),
        ("duplicated (same event id twice on a stream)", fig1["duplicates"], None, "",
         goal(fig1["duplicates"] == 0, "0")),
        ("stream reconnects (Last-Event-ID)", r["reconnects"], None, "", ""),
    ]
    secs = r["fig1_seconds"]
    shortened = f" (shortened from {p['seconds']} s: the run was long already)" if secs < p["seconds"] else ""
    table(f"1. Delivery latency, {n1:,} open visitor streams + 1 agent stream, {p['rate']} msg/s "
          f"(half each way) for {secs} s{shortened}, {scale}. Percentiles over every sent "
          "message, from just before the POST is written to the SSE event on the other side; "
          "a message not there within 5 s is lost. Floor: bare POST /insert round trip at the "
          "same rate.", rows)

    best = max((s["rate"] for s in r["steps"] if s["ok"]), default=None)
    rows = [(f"step {s['rate']:,} msg/s: p99 {fmt_ms(percentile(s['all'], .99))}, sent {s['sent']:,}, "
             f"skipped {s['skipped']:,}, errors {s['errors']:,}, lost {s['lost_total']:,}",
             s["achieved"], None, "msg/s", "pass" if s["ok"] else "fail") for s in r["steps"]]
    ceiling = max((s["rate"] for s in r["ceiling"] if s["ok"]), default=None)
    rows.append(("load client's own ceiling: same load against an in-memory chat (null_chat.py), "
                 "highest sustained step",
                 float(ceiling) if ceiling else f"< {min(s['rate'] for s in r['ceiling']):,} msg/s",
                 None, "msg/s", ""))
    rows.append(("highest sustained rate (p99 ≤ 100 ms, 0 lost)",
                 float(best) if best else f"< {min(s['rate'] for s in r['steps']):,} msg/s",
                 f["insert_max"], "msg/s", goal(bool(best) and best >= 1500, "≥ 1,500 msg/s")))
    rows.append(("floor only: the same bare insert served by a Starlette endpoint (no a2wsgi, no "
                 "Flask) — the most a hot write could gain by leaving the Flask path",
                 f["asgi_insert_max"], f["insert_max"], "msg/s", ""))
    table(f"2. Sustained message rate ({p['step_seconds']} s steps). Floor: bare POST /insert, "
          "closed loop, 16 connections.", rows)

    rows = []
    for n in p["streams"]:
        ours, n_ours = r["memory"].get(n, (float("nan"), 0))
        floor, n_floor = f["memory"][n]
        opened = "" if n_ours == n_floor == n else f" (opened: Lumnar {n_ours:,}, floor {n_floor:,})"
        rows.append((f"RSS per idle stream at {n:,} streams{opened}", ours, floor, "KB",
                     goal(ours <= 40, "≤ 40 KB")))
    first = True
    for n in p["streams"]:
        rows.append((f"streams opened per second, {'first' if first else 'next'} "
                     f"{n if first else n - p['streams'][0]:,} (100 handshakes at a time)",
                     r["open_rate"][n], f["open_rate"][n], "/s", ""))
        first = False
    table("3. Server memory per idle stream (uvicorn VmRSS after − before, ÷ N streams actually "
          f"open; the rest were given up after {p['open_deadline']} s). Floor: idle sse-starlette "
          "stream.", rows)

    rows = [
        ("inbox first page p50", percentile(r["inbox"], .5), percentile(f["page"], .5), "ms", ""),
        ("inbox first page p99", percentile(r["inbox"], .99), percentile(f["page"], .99), "ms",
         goal(percentile(r["inbox"], .99) <= 10, "≤ 10 ms")),
    ]
    for key, word in (("search_rare", fill_chat.RARE_WORD), ("search_common", fill_chat.COMMON_WORD)):
        rows += [
            (f"search “{word}” p50 ({len(r[key])} requests)", percentile(r[key], .5),
             percentile(f["page"], .5), "ms", ""),
            (f"search “{word}” p99", percentile(r[key], .99), percentile(f["page"], .99), "ms",
             goal(percentile(r[key], .99) <= 50, "≤ 50 ms")),
        ]
    first = r["first_statuses"]
    rows.append((f"first widget message of a new visitor p50 ({p['widget_visitors']} at once; "
                 f"answers {', '.join(f'{k}×{v}' for k, v in sorted(first.items(), key=str))})",
                 1000 * percentile(r["first_message"], .5), percentile(f["page"], .5), "ms", ""))
    table(f"4. Dashboard pages at {scale}: client-observed latency on loopback, sequential, "
          f"at most {p['page_requests']} requests or {p['page_seconds']} s each "
          f"(“{fill_chat.RARE_WORD}” is in ~0.4 % of messages, “{fill_chat.COMMON_WORD}” in ~11 %). "
          "Floor: bare Flask GET /healthz.", rows)

    total, loader, compressed, parts = r["bytes"]
    how = "gzip from the server" if compressed else "server does not compress yet: gzip -6 of each body"
    rows = [(f"{path}", size / 1024, None, "KB", "") for path, size in parts.items()]
    rows += [
        ("first open, total", total / 1024, vendor_floor() / 1024, "KB", goal(total <= 25 * 1024, "≤ 25 KB")),
        ("/widget.js alone", loader / 1024, None, "KB", goal(loader <= 4 * 1024, "≤ 4 KB")),
    ]
    table(f"5. Widget bytes on first open ({how}; bodies only). "
          "Floor: htmx.min.js + sse.min.js gzipped, the libraries alone.", rows)

    print("\nServer errors during the run (last line of each traceback in the uvicorn and Huey "
          "output):\n")
    for line, count in r["server_errors"] or [("none", "")]:
        print(f"- {count}{' × ' if count else ''}{line}")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description="Live chat benchmark.")
    parser.add_argument("--quick", action="store_true", help="small data set and short runs")
    parser.add_argument("--asgi", default="app.asgi:app",
                        help="the ASGI app to measure (to try a candidate change; default app.asgi:app)")
    args = parser.parse_args()
    p = QUICK if args.quick else FULL
    signal.alarm(900 if not args.quick else 300)  # a run that hangs stops by itself
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    if hard < 2 * p["streams"][1] + 500:
        log(f"warning: file-descriptor limit {hard} is low for {p['streams'][1]} streams")
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]

    fill_chat.filled_db(p["conversations"], p["messages"])
    log("floor server (bare Starlette + a2wsgi Flask)")
    with run_server("tests.bench.floor_app:app") as floor:
        f = asyncio.run(floor_phase(floor.port, floor.pid, p))

    data = Path(tempfile.mkdtemp(prefix="lumnar-bench-chat-"))
    try:
        fill_chat.prepare(data, p["conversations"], p["messages"])
        loaders, extra = seed(data, p["streams"][0], p["streams"][1] + 100)
        log(f"seeded {len(loaders)} open conversations; starting uvicorn + huey_consumer")
        server_log = data / "server.log"
        with run_server(args.asgi, env=ENV, data=str(data), worker=True, ready_timeout=60,
                        log=str(server_log)) as lumnar:
            r = asyncio.run(lumnar_phase(lumnar.port, lumnar.pid, p, loaders, extra, t_start))
        r["server_errors"] = server_errors(server_log)
        if r["server_errors"]:
            keep = ROOT / "data" / "bench" / "last-server.log"
            shutil.copyfile(server_log, keep)
            log(f"server output kept in {keep.relative_to(ROOT)}")
        log("client ceiling: the same load against an in-memory chat (tests/bench/null_chat.py)")
        with run_server("tests.bench.null_chat:app") as null:
            r["ceiling"] = asyncio.run(null_phase(null.port, null.pid, p, loaders))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    for line, count in r["server_errors"]:
        log(f"server log: {count} × {line}")
    r["elapsed"] = time.monotonic() - t_start
    r["load"] = (load_before, os.getloadavg()[0])
    log(f"done in {r['elapsed']:.0f} s")
    report(p, f, r, args.quick)


if __name__ == "__main__":
    main()
