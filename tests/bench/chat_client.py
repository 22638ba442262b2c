"""The chat benchmark's load client: real SSE streams and real POSTs through the widget's and
the dashboard's own endpoints, spread over several client processes so that the client is
not what limits the figures (its ceiling is measured against tests/bench/null_chat.py).

Each client process (`Load` starts them) holds its share of the visitor streams and one agent
(dashboard) stream, sends its share of the rate, and sends back every message's outcome; the
parent merges them. uvloop is used when installed.

Honesty rules, kept here in one place:
- a message scheduled but never sent (no free connection, or the run ran out of time) counts
  as not sent, and as lost;
- every answer's status is checked: non-2xx answers and failed requests are counted as errors,
  kept out of the latency percentiles, and their messages count as lost;
- a message not on the other side's stream within DELIVERY_DEADLINE is lost (an infinite
  latency in the percentiles); the same message or event twice on a stream is a duplicate.
"""

import asyncio
import multiprocessing
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import fill_chat  # noqa: E402
from tests.bench import sse_client as hc  # noqa: E402
from tests.bench.harness import percentile  # noqa: E402

try:  # a faster event loop for the client when installed (uvicorn[standard] brings it)
    import uvloop
except ImportError:  # pragma: no cover - the client works without it, only slower
    uvloop = None

DELIVERY_DEADLINE = 5.0  # seconds: a message not on the other side's stream by then is lost
POST_TIMEOUT = 5.0  # a POST unanswered this long could not be delivered in time either
POOL = 64  # keep-alive connections per side and process; none free = the message is skipped
RECONNECT = (0.25, 0.75)  # seconds before a dropped stream reconnects (random, as many browsers)
KEY = fill_chat.SITE_KEY
# A marked message's text as it appears in a rendered message (agent: class="body", visitor:
# class="w-body"); the same text in an inbox row's preview does not count as a delivery.
MARK = re.compile(rb'body">bench (mk\d+_\d+x)')
INF = float("inf")


def run(coro):
    return uvloop.run(coro) if uvloop is not None else asyncio.run(coro)


class Tracker:
    """Which marked message was sent when, and when it reached the other side's stream."""

    def __init__(self, worker: int = 0):
        self.worker = worker
        self.records = {}  # marker -> [direction, target tag, sent ns, delivered ns]
        self.duplicates = 0
        self.seq = 0

    def marker(self) -> bytes:
        self.seq += 1
        return b"mk%d_%07dx" % (self.worker, self.seq)

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
    s.back_at = None  # wall time of the last successful reconnect
    return s


def last_event_id(stream):
    return max(stream.seen, key=int) if stream.seen else None


async def keep_open(stream, stop: asyncio.Event, counters: dict):
    """Reconnect an ended stream with Last-Event-ID, as EventSource does, until `stop`."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            if stream.task is not None and not stream.task.done():
                await asyncio.wait([stream.task, stopped], return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                return
            counters["reconnects"] = counters.get("reconnects", 0) + 1
            try:
                await asyncio.wait_for(asyncio.shield(stopped), random.uniform(*RECONNECT))
                return
            except TimeoutError:
                pass
            last = last_event_id(stream)
            fresh = hc.SSEStream(stream.port, stream.path,
                                 {**stream.headers, **({"Last-Event-ID": last} if last else {})},
                                 stream.on_event, stream.tag)
            try:
                if await fresh.open(timeout=10) == 200:
                    stream.reader, stream.writer, stream.head = fresh.reader, fresh.writer, fresh.head
                    stream.ended = False
                    stream.back_at = time.time()
                    stream.start()
                else:
                    stream.task = None
            except (TimeoutError, OSError, hc.HTTPError, asyncio.IncompleteReadError):
                stream.task = None
    finally:
        stopped.cancel()


class Client:
    """One client process's side of the load: its streams, its connections, its messages."""

    def __init__(self, port: int, worker: int, agent: dict | None):
        self.port, self.worker = port, worker
        self.agent = agent  # cookie, csrf, after (None: an in-memory chat that checks nothing)
        self.tracker = Tracker(worker)
        self.groups: dict = {}  # name -> streams
        self.keepers: list = []
        self.stop = asyncio.Event()
        self.counters: dict = {}
        self.pools = None

    def agent_headers(self, **extra):
        return {"Cookie": f"lumnar_session={self.agent['cookie']}", **extra} if self.agent else extra

    async def open(self, group: str, loaders: list, agent_stream: bool = False,
                   keep: bool = True, deadline: float = 60) -> dict:
        """Open visitor streams (loaders: path + conversation), and the agent stream when asked."""
        streams = [make_stream(self.port, ld["path"], ld.get("conversation"), self.tracker)
                   for ld in loaders]
        if agent_stream:
            after = f"?after={self.agent['after']}" if self.agent else ""
            streams.append(make_stream(self.port, f"/sse/dashboard{after}", "agent", self.tracker,
                                       self.agent_headers()))
        t0 = time.perf_counter()
        counts = await hc.open_streams(streams, deadline=deadline)
        took = time.perf_counter() - t0
        self.groups[group] = streams
        if keep:
            self.keepers += [asyncio.ensure_future(keep_open(s, self.stop, self.counters))
                             for s in streams if s.task is not None]
        return {"counts": counts, "open": sum(1 for s in streams if s.task is not None),
                "seconds": took}

    async def close(self, group: str) -> dict:
        streams = self.groups.pop(group, [])
        await hc.close_streams(streams)
        return {"closed": len(streams)}

    async def streams_state(self, group: str) -> dict:
        """How many streams of a group are open now, and when each came back last (wall time)."""
        streams = self.groups.get(group, [])
        return {"open": sum(1 for s in streams if s.task is not None and not s.task.done()),
                "total": len(streams), "back_at": [s.back_at for s in streams],
                "reconnects": self.counters.get("reconnects", 0)}

    async def drive(self, rate: float, seconds: float, start_at: float, loaders: list,
                    deadline: float = DELIVERY_DEADLINE) -> dict:
        """Send `rate` marked messages a second for `seconds` from wall time `start_at`,
        alternating visitor→agent (widget POST) and agent→visitor (dashboard POST), then wait
        for their delivery, at most `deadline` seconds each. Returns every message's outcome
        (see Outcomes)."""
        if self.pools is None:
            self.pools = {side: asyncio.Queue() for side in ("visitor", "agent")}
            for q in self.pools.values():
                for _ in range(POOL):
                    q.put_nowait(hc.Connection(self.port))
        pools, tracker = self.pools, self.tracker
        by_conv = {ld["conversation"]: ld for ld in loaders}
        conv_ids = list(by_conv)
        total = int(rate * seconds)
        answered = {"v2a": [], "a2v": []}  # ms each 2xx answer took
        failed = {}  # mark -> status or exception name of a POST that failed: not in the percentiles
        tasks = set()
        marks, unsent = [], []  # unsent: (direction, seconds after the start it was due)
        dup0 = self.tracker.duplicates

        async def send(conn, pool, path, headers, body, rec, mark):
            try:
                r = await conn.request("POST", path, headers, body, POST_TIMEOUT,
                                       on_sent=lambda t: rec.__setitem__(2, t))
                if not 200 <= r.status < 300:
                    failed[mark] = r.status
                else:
                    answered[rec[0]].append((time.perf_counter_ns() - rec[2]) / 1e6)
                if pool is pools["agent"] and self.agent and "lumnar_session" in r.cookies:
                    self.agent["cookie"] = r.cookies["lumnar_session"]
            except Exception as exc:  # timeouts, resets, refused: counted, the run goes on
                failed[mark] = type(exc).__name__
            finally:
                pool.put_nowait(conn)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        wall0, started = time.time(), time.perf_counter()
        i = 0
        while i < total and time.perf_counter() - started < seconds + 2:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            while i < due:
                i += 1
                conv = conv_ids[(i // 2) % len(conv_ids)]
                to_agent = bool(i % 2)
                d = "v2a" if to_agent else "a2v"
                pool = pools["visitor" if to_agent else "agent"]
                if pool.empty():
                    unsent.append((d, (i - 1) / rate))
                    continue
                mark = tracker.marker()
                body = hc.form({"body": f"bench {mark.decode()} hello"})
                if to_agent:
                    path = f"/widget/{KEY}/messages"
                    headers = {"X-Lumnar-Visitor": by_conv[conv]["token"], "HX-Request": "true"}
                else:
                    path = f"/dashboard/conversations/{conv}/messages"
                    headers = self.agent_headers(**{"X-CSRFToken": self.agent["csrf"] if self.agent else "",
                                                    "HX-Request": "true"})
                rec = [d, "agent" if to_agent else conv, None, None, (i - 1) / rate]
                tracker.records[mark] = rec
                marks.append(mark)
                t = asyncio.ensure_future(send(pool.get_nowait(), pool, path, headers, body, rec, mark))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        window = time.perf_counter() - started
        # Scheduled but never reached (the run ran out of time): not sent, half each way.
        for k in range(i, total):
            unsent.append(("v2a" if (k + 1) % 2 else "a2v", k / rate))
        # Deliveries: every sent message gets DELIVERY_DEADLINE from its send; POSTs their timeout.
        samples = await collect_samples(tracker.records, marks, tasks, failed, unsent, deadline,
                                        POST_TIMEOUT)
        return dict(rate=rate, seconds=seconds, wall0=wall0, window=window, samples=samples,
                    answered=answered,
                    duplicates=self.tracker.duplicates - dup0)

    async def shutdown(self) -> dict:
        self.stop.set()
        if self.keepers:
            await asyncio.wait(self.keepers, timeout=5)
        for group in list(self.groups):
            await self.close(group)
        if self.pools:
            for q in self.pools.values():
                while not q.empty():
                    q.get_nowait().close()
        return {}


def _worker(conn, port: int, worker: int, agent: dict | None):
    async def main():
        client = Client(port, worker, agent)
        loop = asyncio.get_running_loop()
        while True:
            op, kwargs = await loop.run_in_executor(None, conn.recv)
            try:
                result = await getattr(client, op)(**kwargs)
            except Exception as exc:  # reported to the parent, which stops the run
                result = {"error": f"{type(exc).__name__}: {exc}"}
            conn.send(result)
            if op == "shutdown":
                return

    run(main())


class Load:
    """`processes` client processes on one server; calls go to all of them at once. (The
    cluster benchmark's client, tests/bench/cluster_client.py, is this with its own worker.)"""

    worker = staticmethod(_worker)  # what each client process runs (spawned: a module function)

    def __init__(self, port: int, processes: int, agent: dict | None):
        self.spawn(processes, lambda w: (port, w, dict(agent) if agent else None))

    def spawn(self, processes: int, args_of) -> None:
        """Start the client processes: process w runs worker(pipe, *args_of(w))."""
        ctx = multiprocessing.get_context("spawn")
        self.n = processes
        self.pipes, self.procs = [], []
        for w in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=self.worker, args=(child, *args_of(w)), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def call(self, op: str, per_worker: list[dict]) -> list:
        for pipe, kwargs in zip(self.pipes, per_worker, strict=True):
            pipe.send((op, kwargs))
        out = [pipe.recv() for pipe in self.pipes]
        for r in out:
            if isinstance(r, dict) and "error" in r:
                raise RuntimeError(f"load client {op}: {r['error']}")
        return out

    def share(self, items: list) -> list[list]:
        return [items[w::self.n] for w in range(self.n)]

    def open(self, group, loaders, keep=True, deadline=60, **extra) -> dict:
        """`extra`: what this client's open() also takes (agent_stream; the cluster's agent_path)."""
        parts = self.call("open", [dict(group=group, loaders=part, keep=keep, deadline=deadline,
                                        **extra) for part in self.share(loaders)])
        counts: dict = {}
        for p in parts:
            for k, v in p["counts"].items():
                counts[k] = counts.get(k, 0) + v
        return {"counts": counts, "open": sum(p["open"] for p in parts),
                "seconds": max(p["seconds"] for p in parts)}

    def close(self, group):
        self.call("close", [dict(group=group)] * self.n)

    def streams_state(self, group) -> dict:
        parts = self.call("streams_state", [dict(group=group)] * self.n)
        return {"open": sum(p["open"] for p in parts), "total": sum(p["total"] for p in parts),
                "back_at": [t for p in parts for t in p["back_at"]],
                "reconnects": sum(p["reconnects"] for p in parts)}

    def drive(self, rate, seconds, loaders, deadline=DELIVERY_DEADLINE) -> "Outcomes":
        start_at = time.time() + 0.3
        parts = self.call("drive", [dict(rate=rate / self.n, seconds=seconds, start_at=start_at,
                                         loaders=part, deadline=deadline)
                                    for part in self.share(loaders)])
        return Outcomes(rate, seconds, parts)

    def shutdown(self):
        try:
            self.call("shutdown", [{}] * self.n)
        finally:
            for proc in self.procs:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()


class Outcomes:
    """Every message of one run, merged from the client processes."""

    def __init__(self, rate, seconds, parts, since=None, until=None):
        self.rate, self.seconds = rate, seconds
        self.parts = parts
        self.wall0 = min(p["wall0"] for p in parts)
        window = max(p["window"] for p in parts)
        # since/until: only the messages due in that window of wall time (the rest left out).
        samples = [s for p in parts for s in p["samples"]
                   if (since is None or p["wall0"] + s[1] >= since) and (until is None or p["wall0"] + s[1] < until)]
        self.not_sent = sum(1 for s in samples if s[3] == "unsent")
        self.sent = len(samples) - self.not_sent
        self.statuses: dict = {}  # failed answers: status or exception name -> count
        for s in samples:
            if s[3] not in ("ok", "unsent"):
                self.statuses[s[3]] = self.statuses.get(s[3], 0) + 1
        self.errors = sum(self.statuses.values())
        self.duplicates = sum(p["duplicates"] for p in parts)
        # Latency percentiles: every accepted (2xx) message; one never delivered counts as INF.
        self.lat = {d: sorted(s[2] for s in samples if s[0] == d and s[3] == "ok") for d in ("v2a", "a2v")}
        self.all = sorted(self.lat["v2a"] + self.lat["a2v"])
        self.undelivered = sum(1 for v in self.all if v == INF)
        # Lost: accepted but never delivered, plus refused or failed, plus never sent.
        self.lost = self.undelivered + self.errors + self.not_sent
        self.answered = {d: sorted(v for p in parts for v in p["answered"][d]) for d in ("v2a", "a2v")}
        self.achieved = self.sent / window if window else 0.0
        self.scheduled = self.sent + self.not_sent

    def p(self, q, direction=None) -> float:
        return percentile(self.lat[direction] if direction else self.all, q)

    def sustained(self) -> bool:
        """Every scheduled message sent, answered 2xx and delivered once, p99 ≤ 100 ms."""
        return (self.lost == 0 and self.duplicates == 0 and self.sent > 0
                and self.p(.99) <= 100 and self.achieved >= 0.95 * self.rate)

    def line(self) -> str:
        def f(v):
            return "lost" if v == INF else f"{v:,.1f} ms"
        return (f"{self.rate:g} msg/s × {self.seconds:g} s: sent {self.sent} of {self.scheduled}, "
                f"errors {self.errors} {self.statuses or ''}, lost {self.lost}, dup {self.duplicates}, "
                f"p50 {f(self.p(.5))}, p99 {f(self.p(.99))}")


async def collect_samples(records: dict, marks, tasks, failed: dict, unsent: list, deadline: float,
                          post_wait: float) -> list:
    """Wait until every sent message is delivered, past its deadline, or failed (and the
    posts still out have had `post_wait`), then the run's samples: (direction, seconds after
    the start it was due, ms or INF, "ok" | "unsent" | the failed answer's status or
    exception name). Shared by the one-process and the cluster benchmarks."""
    wait_until = time.perf_counter() + deadline + post_wait
    while time.perf_counter() < wait_until:
        now_ns = time.perf_counter_ns()
        waiting = any(records[m][3] is None and m not in failed and
                      (records[m][2] is None or now_ns - records[m][2] < deadline * 1e9)
                      for m in marks)
        if not tasks and not waiting:
            break
        await asyncio.sleep(0.05)
    samples = [(d, at, INF, "unsent") for d, at in unsent]
    for m in marks:
        d, _, t_sent, t_got, at = records.pop(m)
        if t_sent is None or t_got is None or t_got - t_sent > deadline * 1e9:
            latency = INF
        else:
            latency = (t_got - t_sent) / 1e6
        samples.append((d, at, latency, failed.get(m, "ok")))
    return samples
