"""The cluster benchmark's load client: real SSE streams and real POSTs spread over several web
processes, each on its own port, so that every timed message crosses from one process to
another (tests/bench/bench_chat_cluster.py says why ports and not `uvicorn --workers`).

Routing, the same for Lumnar and for its floor: conversation j's visitor stream is held on
process j mod N and its messages (both ways) are posted to process (j + 1) mod N. Every client
process holds one agent stream on each web process; a visitor's message is timed on the agent
stream of process j mod N, the one it was not posted to. With N = 1 everything is on the one
process: no hop, the baseline.

Failover, as a load balancer in front and a browser would do it: a stream that ends reconnects
after 0.25–0.75 s with Last-Event-ID to its own process or, when that refuses, to the next that
answers; a POST whose connection is refused or cut is sent again to the next process that
answers, with the same client_id (Lumnar stores a retried post once).

chat_client.py's honesty rules hold here too: a message scheduled but not sent, answered
non-2xx, or not delivered within the deadline is lost; the same event id twice on a stream, or
the same message twice on its stream, is a duplicate. Each stream also keeps every event id it
received, in order, for the exactly-once check after a kill.
"""

import asyncio
import random
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import chat_client  # noqa: E402
from tests.bench import sse_client as hc  # noqa: E402
from tests.bench.chat_client import (  # noqa: E402
    DELIVERY_DEADLINE,
    KEY,
    MARK,
    POOL,
    POST_TIMEOUT,
    RECONNECT,
    Outcomes,
    run,
)

DOWN_FOR = 1.0  # seconds a process that refused a connection is skipped
ATTEMPTS = 4  # tries of one POST (the first included)
CUT = (ConnectionError, asyncio.IncompleteReadError, hc.HTTPError)  # worth sending again


def home(index: int, n: int) -> int:
    """The web process holding conversation `index`'s visitor stream."""
    return index % n


def post_to(index: int, n: int) -> int:
    """The web process conversation `index`'s messages are posted to (another one when n > 1)."""
    return (index + 1) % n


class Client:
    """One client process's share: its streams, connections and messages."""

    def __init__(self, ports: list, worker: int, mode: str, agent: dict | None):
        self.ports, self.n, self.worker = ports, len(ports), worker
        self.mode = mode  # "lumnar" or "floor"
        self.agent = agent  # Lumnar: the agent's cookie and CSRF token
        self.records = {}  # marker -> [direction, target tag, sent ns, delivered ns, due s]
        self.duplicates = 0
        self.seq = 0
        self.groups: dict = {}
        self.keepers: list = []
        self.stop = asyncio.Event()
        self.down: dict = {}  # process index -> monotonic time until which it is skipped
        self.pools: dict = {}  # (process index, side) -> queue of keep-alive connections
        self.reconnects = 0
        self.retried = 0
        # Client ids are kept by the database: markers start again in every client process,
        # so each process's ids carry a nonce of their own (a reused id is a retry, stored once).
        self.nonce = secrets.token_hex(4)

    # -- routing -------------------------------------------------------------------------------
    def order(self, first: int) -> list:
        """Process indexes to try, from `first` on; those that refused lately come last."""
        now = time.monotonic()
        idx = [(first + k) % self.n for k in range(self.n)]
        return [i for i in idx if self.down.get(i, 0) <= now] + [i for i in idx if self.down.get(i, 0) > now]

    def pool(self, i: int, side: str) -> asyncio.Queue:
        q = self.pools.get((i, side))
        if q is None:
            q = self.pools[(i, side)] = asyncio.Queue()
            for _ in range(POOL):
                q.put_nowait(hc.Connection(self.ports[i]))
        return q

    def agent_headers(self, **extra) -> dict:
        if self.mode == "lumnar":
            return {"Cookie": f"lumnar_session={self.agent['cookie']}", **extra}
        return extra

    # -- streams -------------------------------------------------------------------------------
    def on_event(self, stream, event, t_ns):
        if event.id is not None:
            eid = int(event.id) if event.id.isdigit() else event.id
            stream.ids.append(eid)
            stream.last = event.id
            if eid in stream.seen:
                self.duplicates += 1
                return
            stream.seen.add(eid)
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

    def make_stream(self, at: int, path: str, tag, headers=None):
        s = hc.SSEStream(self.ports[at], path, headers, on_event=self.on_event, tag=tag)
        s.home, s.seen, s.ids, s.last, s.back_at, s.served_by = at, set(), [], None, None, [at]
        s.closed = False  # closed by close(): not reconnected
        return s

    async def open(self, group: str, loaders: list, agent_path: str | None = None,
                   keep: bool = True, deadline: float = 60) -> dict:
        """Visitor streams for `loaders` (index, conversation, path), each on its home
        process, and with `agent_path` one agent stream on every process."""
        streams = [self.make_stream(home(ld["index"], self.n), ld["stream"], ld["conversation"])
                   for ld in loaders]
        if agent_path is not None:
            streams += [self.make_stream(i, agent_path, f"agent:{i}", self.agent_headers())
                        for i in range(self.n)]
        t0 = time.perf_counter()
        counts = await hc.open_streams(streams, deadline=deadline)
        self.groups[group] = streams
        if keep:
            self.keepers += [asyncio.ensure_future(self.keep_open(s)) for s in streams if s.task is not None]
        return {"counts": counts, "open": sum(1 for s in streams if s.task is not None),
                "seconds": time.perf_counter() - t0}

    async def keep_open(self, stream):
        """Reconnect an ended stream with Last-Event-ID, as EventSource does, to its own
        process or the next that answers, until stop."""
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set() and not stream.closed:
                if stream.task is not None and not stream.task.done():
                    await asyncio.wait([stream.task, stopped], return_when=asyncio.FIRST_COMPLETED)
                if self.stop.is_set() or stream.closed:
                    return
                self.reconnects += 1
                try:
                    await asyncio.wait_for(asyncio.shield(stopped), random.uniform(*RECONNECT))
                    return
                except TimeoutError:
                    pass
                stream.task = None
                for i in self.order(stream.home):
                    headers = {**stream.headers, **({"Last-Event-ID": stream.last} if stream.last else {})}
                    fresh = hc.SSEStream(self.ports[i], stream.path, headers, stream.on_event, stream.tag)
                    try:
                        status = await fresh.open(timeout=10)
                    except ConnectionRefusedError:
                        self.down[i] = time.monotonic() + DOWN_FOR
                        continue
                    except (TimeoutError, OSError, hc.HTTPError, asyncio.IncompleteReadError):
                        continue
                    if stream.closed:
                        fresh.close()
                        return
                    if status == 200:
                        stream.port = fresh.port
                        stream.reader, stream.writer, stream.head = fresh.reader, fresh.writer, fresh.head
                        stream.ended = False
                        stream.back_at = time.time()
                        stream.served_by.append(i)
                        stream.start()
                        break
        finally:
            stopped.cancel()

    async def close(self, group: str) -> dict:
        streams = self.groups.pop(group, [])
        for s in streams:
            s.closed = True
        await hc.close_streams(streams)
        return {"closed": len(streams)}

    async def streams_state(self, group: str) -> dict:
        streams = self.groups.get(group, [])
        return {"open": sum(1 for s in streams if s.task is not None and not s.task.done()),
                "total": len(streams), "back_at": [s.back_at for s in streams],
                "reconnects": self.reconnects}

    async def stream_ids(self, group: str) -> list:
        """Every stream's tag, the event ids it received in order, the processes it was on."""
        return [{"tag": s.tag, "ids": list(s.ids), "served_by": list(s.served_by)}
                for s in self.groups.get(group, [])]

    # -- messages ------------------------------------------------------------------------------
    def request(self, ld: dict, to_agent: bool, mark: bytes):
        """(path, headers, body) of one marked message, visitor → agent or agent → visitor."""
        text = f"bench {mark.decode()} hello"
        if self.mode == "floor":
            actor = "visitor" if to_agent else "agent"
            return f"/post?c={ld['conversation']}&actor={actor}", {}, hc.form({"body": text})
        # A client_id per message: a retry after a cut stores nothing twice.
        body = hc.form({"body": text, "client_id": f"{self.nonce}-{mark.decode()}"})
        if to_agent:
            return (f"/widget/{KEY}/messages", {"X-Lumnar-Visitor": ld["token"], "HX-Request": "true"}, body)
        return (f"/dashboard/conversations/{ld['conversation']}/messages",
                self.agent_headers(**{"X-CSRFToken": self.agent["csrf"], "HX-Request": "true"}), body)

    async def drive(self, rate: float, seconds: float, start_at: float, loaders: list,
                    deadline: float = DELIVERY_DEADLINE) -> dict:
        """Send `rate` marked messages a second for `seconds` from wall time `start_at`,
        alternating visitor → agent and agent → visitor, then wait for their delivery (at most
        `deadline` seconds each). Returns every message's outcome (chat_client.Outcomes' part)."""
        n = self.n
        total = int(rate * seconds)
        answered = {"v2a": [], "a2v": []}
        failed = {}
        tasks = set()
        marks, unsent = [], []
        dup0, retried0 = self.duplicates, self.retried

        async def send(i, conn, side, path, headers, body, rec, mark):
            t0 = time.perf_counter()
            tries = 0
            try:
                while True:
                    tries += 1
                    try:
                        r = await conn.request("POST", path, headers, body, POST_TIMEOUT,
                                               on_sent=lambda t: rec[2] is None and rec.__setitem__(2, t))
                    except CUT as exc:
                        refused = isinstance(exc, ConnectionRefusedError)
                        if refused:
                            self.down[i] = time.monotonic() + DOWN_FOR
                        if tries >= ATTEMPTS or time.perf_counter() - t0 > POST_TIMEOUT:
                            raise
                        self.retried += 1
                        self.pool(i, side).put_nowait(conn)
                        conn = None
                        # The same process again after a cut keep-alive connection (it may be
                        # fine); the next one when it refused.
                        i = self.order((i + 1) % n if refused else i)[0]
                        conn = await self.pool(i, side).get()
                        continue
                    if not 200 <= r.status < 300:
                        failed[mark] = r.status
                    else:
                        answered[rec[0]].append((time.perf_counter_ns() - rec[2]) / 1e6)
                    if side == "agent" and self.agent and "lumnar_session" in r.cookies:
                        self.agent["cookie"] = r.cookies["lumnar_session"]
                    return
            except Exception as exc:  # timeouts, resets, refused everywhere: counted
                failed[mark] = type(exc).__name__
            finally:
                if conn is not None:
                    self.pool(i, side).put_nowait(conn)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        wall0, started = time.time(), time.perf_counter()
        i = 0
        while i < total and time.perf_counter() - started < seconds + 2:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            while i < due:
                i += 1
                ld = loaders[(i // 2) % len(loaders)]
                to_agent = bool(i % 2)
                d, side = ("v2a", "visitor") if to_agent else ("a2v", "agent")
                at = self.order(post_to(ld["index"], n))[0]
                pool = self.pool(at, side)
                if pool.empty():
                    unsent.append((d, (i - 1) / rate))
                    continue
                self.seq += 1
                mark = b"mk%d_%07dx" % (self.worker, self.seq)
                path, headers, body = self.request(ld, to_agent, mark)
                target = f"agent:{home(ld['index'], n)}" if to_agent else ld["conversation"]
                rec = [d, target, None, None, (i - 1) / rate]
                self.records[mark] = rec
                marks.append(mark)
                t = asyncio.ensure_future(send(at, pool.get_nowait(), side, path, headers, body, rec, mark))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        window = time.perf_counter() - started
        for k in range(i, total):
            unsent.append(("v2a" if (k + 1) % 2 else "a2v", k / rate))
        samples = await chat_client.collect_samples(self.records, marks, tasks, failed, unsent,
                                                    deadline, POST_TIMEOUT * ATTEMPTS)
        return dict(rate=rate, seconds=seconds, wall0=wall0, window=window, samples=samples,
                    answered=answered, duplicates=self.duplicates - dup0,
                    retried=self.retried - retried0)

    async def shutdown(self) -> dict:
        self.stop.set()
        if self.keepers:
            await asyncio.wait(self.keepers, timeout=5)
        for group in list(self.groups):
            await self.close(group)
        for q in self.pools.values():
            while not q.empty():
                q.get_nowait().close()
        return {}


def _worker(conn, ports, worker, mode, agent):
    async def main():
        client = Client(ports, worker, mode, agent)
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


class Load(chat_client.Load):
    """`processes` client processes on the web processes at `ports`; calls go to all at once."""

    worker = staticmethod(_worker)

    def __init__(self, ports: list, processes: int, mode: str, agent: dict | None):
        self.spawn(processes, lambda w: (list(ports), w, mode, dict(agent) if agent else None))

    def stream_ids(self, group) -> list:
        return [s for part in self.call("stream_ids", [dict(group=group)] * self.n) for s in part]

    def drive(self, rate, seconds, loaders, deadline=DELIVERY_DEADLINE) -> Outcomes:
        o = super().drive(rate, seconds, loaders, deadline)
        o.retried = sum(p["retried"] for p in o.parts)  # POSTs sent again to a survivor
        return o

