"""Benchmark helpers: start a server on loopback, drive it with bounded load, print a table.

Every figure is printed beside a floor measured in the same run on the same machine, so the
ratio means something even though absolute numbers vary from box to box.
"""

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str = "/healthz", timeout: float = 20, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(poll)
    raise RuntimeError(f"server on {port} did not answer {path}")


class Running:
    """A server started by run_server(): its port, data folder and process id."""

    def __init__(self, port: int, data: str, proc: subprocess.Popen, start=None, ready=None):
        self.port, self.data, self.proc = port, data, proc
        self._start, self._ready = start, ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill_and_restart(self) -> tuple[float, float]:
        """kill -9 the web process, start it again on the same port and data; returns the wall
        times (killed, answering again)."""
        self.proc.kill()
        killed = time.time()
        self.proc.wait(10)
        self.proc = self._start()
        self._ready()
        return killed, time.time()


@contextmanager
def run_server(asgi_target: str, env: dict | None = None, ready_path: str = "/healthz",
               data: str | None = None, worker: bool = False, ready_timeout: float = 30,
               log: str | None = None):
    """Run `uvicorn asgi_target` (one process) on a free port.

    data: a data folder already holding a database (it is not migrated); by default a fresh
    throw-away folder, migrated. worker: also run a Huey consumer on the same folder."""
    port = free_port()
    if data is None:
        data = tempfile.mkdtemp(prefix="lumnar-bench-")
        migrate = True
    else:
        migrate = False
    full_env = {**os.environ, "LUMNAR_ENV": "development", "LUMNAR_DATA_DIR": data,
                "LUMNAR_RATELIMIT": "0", "LUMNAR_BASE_URL": f"http://127.0.0.1:{port}", **(env or {})}
    if migrate:
        subprocess.run([str(BIN / "flask"), "--app", "app", "migrate"], cwd=ROOT, env=full_env,
                       check=True, capture_output=True)
    procs = []
    out = open(log, "ab") if log else None
    try:
        if worker:
            procs.append(subprocess.Popen(
                [str(BIN / "huey_consumer"), "jobs.main.huey", "-w", "2", "-k", "thread", "-q"],
                cwd=ROOT, env=full_env, stdout=out, stderr=out))
        def start():
            proc = subprocess.Popen(
                [str(BIN / "uvicorn"), asgi_target, "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning", "--no-access-log"],
                cwd=ROOT, env=full_env, stdout=out, stderr=out,
            )
            procs.append(proc)
            return proc

        def ready():
            wait_http(port, ready_path, ready_timeout, poll=0.01)

        proc = start()
        ready()
        yield Running(port, data, proc, start, ready)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if out is not None:
            out.close()
        if migrate:  # the throw-away folder made here
            shutil.rmtree(data, ignore_errors=True)


@contextmanager
def server(asgi_target: str, env: dict | None = None, ready_path: str = "/healthz"):
    """Run `uvicorn asgi_target` on a free port with a throw-away data folder."""
    with run_server(asgi_target, env, ready_path) as running:
        yield running.port, running.data


def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, timeout: float = 15, quiet: float = 0.1) -> float:
    """Wait until a process is nearly idle (under `quiet` of a core over 0.5 s); returns the wait."""
    started = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last <= quiet * 0.5 + 1e-9:
            break
        last = now
    return time.monotonic() - started


def percentile(sorted_values: list, q: float):
    """The q-quantile (0..1) of an already sorted list, nearest rank; nan when empty."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def load(port: int, method: str, path: str, body: bytes | None = None, headers=None,
         threads: int = 8, seconds: float = 3.0, max_requests: int = 200_000):
    """Keep-alive clients hammering one URL for a bounded time; returns (req/s, p50 ms, p99 ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    count = [0]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        while time.monotonic() < stop and count[0] < max_requests:
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t0)
            with lock:
                count[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return len(latencies) / elapsed, p(0.5), p(0.99)


def _fmt(value, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if value != value:  # nan: nothing measured
        return "n/a"
    if isinstance(value, int):
        return f"{value:,} {unit}"
    digits = 2 if abs(value) < 1 else 1
    return f"{value:,.{digits}f} {unit}"


def table(title: str, rows: list[tuple]) -> None:
    """rows: (what, ours, floor, unit[, goal]) -> printed with the ratio ours/floor.

    ours/floor may be None (nothing to compare) or a string (printed as is); when any row has a
    goal (a string such as "≤ 3 ms, met"), a goal column is added."""
    with_goal = any(len(row) > 4 for row in rows)
    print(f"\n{title}\n")
    if with_goal:
        print("| measure | Lumnar | floor | ratio | goal |")
        print("| --- | ---: | ---: | ---: | --- |")
    else:
        print("| measure | Lumnar | floor | ratio |")
        print("| --- | ---: | ---: | ---: |")
    for row in rows:
        what, ours, floor, unit = row[:4]
        numeric = isinstance(ours, (int, float)) and isinstance(floor, (int, float))
        ratio = f"{ours / floor:.2f}" if numeric and floor and ours == ours and floor == floor else "—"
        line = f"| {what} | {_fmt(ours, unit)} | {_fmt(floor, unit)} | {ratio} |"
        if with_goal:
            line += f" {row[4] if len(row) > 4 else ''} |"
        print(line)
    sys.stdout.flush()
