"""In-process profile of the chat's hot path: visitor messages posted to the ASGI app (raw ASGI
calls, no HTTP client in the way) with one agent stream and one visitor stream subscribed,
each message waited for on both. Prints process CPU per message and, with --profile, the
functions that cost it. A tool for finding where the time goes, not a benchmark of record:
`make bench` (bench_chat.py) is that.

    python tests/bench/profile_chat_write.py [--messages N] [--profile]
"""

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app import create_app, migrations  # noqa: E402
from app.asgi import build  # noqa: E402
from app.db import connection  # noqa: E402


def setup(data_dir: Path):
    app = create_app({"DATA_DIR": data_dir, "SECRET_KEY": "profile", "ENV_NAME": "development",
                      "RATELIMIT_ENABLED": False, "BACKGROUND_CHECKPOINTS": True})
    from app.accounts import service as accounts
    from app.accounts.models import User
    from app.chat.models import Presence
    from app.db import utcnow
    from app.widget import service as widget_service
    from app.widget.models import Site

    with app.test_request_context(), connection():
        migrations.run()
        accounts.sign_up("Olive Owner", "owner@example.com", "a long enough passphrase")
        user = User.by_email("owner@example.com")
        ws = user.memberships.get().workspace_id
        site = widget_service.save_site(Site(workspace=ws), name="Shop",
                                 allowed_origins="https://shop.example.com")
        visitor, token = widget_service.new_visitor(site)
        Presence.create(kind=Presence.AGENT, workspace_id=ws, subject_id=user.id,
                        stream_id="profile", seen_at=utcnow())
    return app, ws, site.site_key, token


async def call(root, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "server": ("127.0.0.1", 5000), "client": ("127.0.0.1", 40000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    sent = False
    answer = {"status": 0, "body": b""}

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await root(scope, receive, send)
    return answer["status"], answer["body"]


async def run(app, ws, site_key, token, messages: int, profile: bool, concurrency: int = 1):
    root = build(app)
    starlette = root.app
    hub = starlette.state.hub
    headers = {"X-Lumnar-Visitor": token, "HX-Request": "true",
               "Content-Type": "application/x-www-form-urlencoded"}
    path = f"/widget/{site_key}/messages"
    async with starlette.router.lifespan_context(starlette):
        status, body = await call(root, path, urlencode({"body": "first"}).encode(), headers)
        assert status == 200, body[:300]
        with app.app_context(), connection():
            from app.chat.models import Conversation

            conv_id = Conversation.select().get().id
        agent = hub.subscribe(workspace_id=ws)
        visitor = hub.subscribe(workspace_id=ws, conversation_id=conv_id)

        async def drain(sub, want):
            seen = 0
            while seen < want:
                item = await sub.queue.get()
                seen += getattr(item, "kind", None) == "message"

        async def one_round(n):
            slots = asyncio.Semaphore(concurrency)

            async def send(i):
                async with slots:
                    status, body = await call(root, path,
                                              urlencode({"body": f"hello {i}"}).encode(), headers)
                assert status == 200, body[:300]

            await asyncio.gather(drain(agent, n), drain(visitor, n),
                                 *(send(i) for i in range(n)))

        await one_round(20)  # warm
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        await one_round(messages)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{messages} visitor messages ({concurrency} in flight), each delivered to an agent and a visitor stream: "
          f"{cpu / messages * 1000:.2f} ms CPU per message, {wall / messages * 1000:.2f} ms wall")
    if profiler:
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats(45)
        stats.sort_stats("tottime").print_stats(30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="messages in flight at once (the chat writer commits them together)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, ws, site_key, token = setup(Path(tmp))
        asyncio.run(run(app, ws, site_key, token, args.messages, args.profile, args.concurrency))


if __name__ == "__main__":
    main()
