"""Foundation benchmark: Lumnar's pages beside a bare Flask/a2wsgi/uvicorn hello world."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.harness import load, server, table  # noqa: E402


def main():
    with server("tests.bench.floor_app:app") as (port, _):
        floor_rps, floor_p50, floor_p99 = load(port, "GET", "/healthz")
    with server("app.asgi:app") as (port, _):
        health_rps, health_p50, health_p99 = load(port, "GET", "/healthz")
        login_rps, login_p50, login_p99 = load(port, "GET", "/login")
    table("Foundation: HTTP on 8 keep-alive clients, 3 s each", [
        ("GET /healthz (db + queue check) req/s", health_rps, floor_rps, "req/s"),
        ("GET /login (full page, session, CSRF) req/s", login_rps, floor_rps, "req/s"),
        ("GET /healthz p99", health_p99, floor_p99, "ms"),
        ("GET /login p99", login_p99, floor_p99, "ms"),
    ])


if __name__ == "__main__":
    main()
