"""Benchmark helpers: start a server on loopback, drive it with bounded load, print a table.

Every figure is printed beside a floor measured in the same run on the same machine, so the
ratio means something even though absolute numbers vary from box to box.
"""

import http.client
import os
import socket
import statistics
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


def wait_http(port: int, path: str = "/healthz", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not answer {path}")


@contextmanager
def server(asgi_target: str, env: dict | None = None, ready_path: str = "/healthz"):
    """Run `uvicorn asgi_target` on a free port with a throw-away data folder."""
    port = free_port()
    data = tempfile.mkdtemp(prefix="lumnar-bench-")
    full_env = {**os.environ, "LUMNAR_DATA_DIR": data, "LUMNAR_RATELIMIT": "0",
                "LUMNAR_BASE_URL": f"http://127.0.0.1:{port}", **(env or {})}
    subprocess.run([str(BIN / "flask"), "--app", "app", "migrate"], cwd=ROOT, env=full_env,
                   check=True, capture_output=True)
    proc = subprocess.Popen(
        [str(BIN / "uvicorn"), asgi_target, "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=full_env,
    )
    try:
        wait_http(port, ready_path)
        yield port, data
    finally:
        proc.terminate()
        proc.wait(10)


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


def table(title: str, rows: list[tuple]) -> None:
    """rows: (what, ours, floor, unit) -> printed with the ratio ours/floor."""
    print(f"\n{title}\n")
    print("| measure | Lumnar | floor | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for what, ours, floor, unit in rows:
        ratio = ours / floor if floor else float("nan")
        print(f"| {what} | {ours:,.1f} {unit} | {floor:,.1f} {unit} | {ratio:.2f} |")
    sys.stdout.flush()
