"""In-process measurement of the dashboard's inbox first page and search, on a copy of the
benchmark's filled database (tests/bench/fill_chat.py, cached under data/bench/): one agent
logged in, each page requested N times one after another, through Flask's test client and
through the ASGI root (raw ASGI calls, as uvicorn would make them; no HTTP client in the way).
Prints p50/p99 of the wall time and the process CPU per request; with --profile, the functions
that cost it. A tool for finding where the time goes, not a benchmark of record: `make bench`
(bench_chat.py) measures the same pages over HTTP.

    python tests/bench/profile_inbox.py [--conversations 10000 --messages 100000] [--requests 300]
                                        [--profile inbox|search_rare|search_common]
"""

import argparse
import asyncio
import cProfile
import pstats
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import fill_chat  # noqa: E402

PAGES = {
    "inbox": "/dashboard/inbox",
    "search_rare": f"/dashboard/inbox?q={fill_chat.RARE_WORD}",
    "search_common": f"/dashboard/inbox?q={fill_chat.COMMON_WORD}",
    "floor": "/healthz",
}
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def setup(data_dir: Path, conversations: int, messages: int):
    source = fill_chat.filled_db(conversations, messages)
    shutil.copyfile(source, data_dir / "lumnar.db")
    from app import create_app

    app = create_app({"ENV_NAME": "development", "DATA_DIR": data_dir,
                      "DATABASE": str(data_dir / "lumnar.db"), "SECRET_KEY": fill_chat.SECRET_KEY,
                      "MASTER_KEYS": fill_chat.MASTER_KEYS, "RATELIMIT_ENABLED": False,
                      "BACKGROUND_CHECKPOINTS": True})
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = next(g for g in CSRF.search(page).groups() if g)
    r = client.post("/login", data=dict(email=fill_chat.EMAIL, password=fill_chat.PASSWORD,
                                        csrf_token=token, website=""))
    assert r.status_code in (302, 303), r.status_code
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    assert cookie is not None, "no session cookie after log-in"
    return app, client, f"{cookie.key}={cookie.value}"


def timed(fn, n: int, profiler=None):
    times = []
    cpu = time.process_time()
    if profiler:
        profiler.enable()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    if profiler:
        profiler.disable()
    return times, 1000 * (time.process_time() - cpu) / n


def flask_get(client, path):
    def get():
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
    return get


async def asgi_get(root, path, cookie) -> int:
    route, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": route, "raw_path": route.encode(),
             "query_string": query.encode(), "root_path": "", "server": ("127.0.0.1", 5000),
             "client": ("127.0.0.1", 40000), "headers": [(b"host", b"127.0.0.1:5000"),
                                                        (b"cookie", cookie.encode())]}
    answer = {"status": 0}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]

    await root(scope, receive, send)
    return answer["status"]


def line(name, how, times, cpu):
    print(f"{name:14} {how:6} n={len(times):4}  p50 {percentile(times, .5):6.2f} ms  "
          f"p99 {percentile(times, .99):6.2f} ms  max {max(times):6.2f} ms  CPU {cpu:5.2f} ms/request",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", choices=sorted(PAGES), help="cProfile one page (Flask client)")
    parser.add_argument("--only", choices=sorted(PAGES), action="append")
    args = parser.parse_args()
    pages = {k: v for k, v in PAGES.items() if not args.only or k in args.only}

    with tempfile.TemporaryDirectory(prefix="lumnar-inbox-") as tmp:
        app, client, cookie = setup(Path(tmp), args.conversations, args.messages)
        print(f"{args.conversations:,} conversations, {args.messages:,} messages; "
              f"{args.requests} requests each, one at a time", flush=True)
        if args.profile:
            profiler = cProfile.Profile()
            get = flask_get(client, PAGES[args.profile])
            timed(get, 20)
            times, cpu = timed(get, args.requests, profiler)
            line(args.profile, "flask", times, cpu)
            stats = pstats.Stats(profiler).sort_stats("cumulative")
            stats.print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
            return
        for name, path in pages.items():
            get = flask_get(client, path)
            timed(get, 20)  # warm: templates compiled, statements prepared, page cache
            line(name, "flask", *timed(get, args.requests))

        from app.asgi import build

        root = build(app)
        starlette = root.app

        async def over_asgi():
            async with starlette.router.lifespan_context(starlette):
                for name, path in pages.items():
                    async def one(path=path):
                        status = await asgi_get(root, path, cookie)
                        assert status == 200, (path, status)
                    for _ in range(20):
                        await one()
                    times = []
                    cpu = time.process_time()
                    for _ in range(args.requests):
                        t0 = time.perf_counter()
                        await one()
                        times.append(1000 * (time.perf_counter() - t0))
                    line(name, "asgi", times, 1000 * (time.process_time() - cpu) / args.requests)

        asyncio.run(over_asgi())


if __name__ == "__main__":
    main()
