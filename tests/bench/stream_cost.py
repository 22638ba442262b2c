"""What an open, idle visitor stream costs the web process: memory, and CPU while nobody talks.

Not a test (run by hand: `.venv/bin/python -m tests.bench.stream_cost [N]`). Starts uvicorn
(uvloop, httptools) on a throw-away database, writes one site and N open conversations,
opens N visitor streams with the bench's own light client, and prints the server's RSS
before and after (KB per stream) and its CPU over an idle stretch.
"""

import asyncio
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.bench import fill_chat
from tests.bench import sse_client as hc
from tests.bench.harness import cpu_seconds, rss_kb, run_server

IDLE_SECONDS = 20


def seed(data: Path, n: int) -> list[str]:
    """The site and n conversations with one message each; each stream's path (ticket, after)."""
    from app import create_app
    from app.chat import service
    from app.chat.models import ChatEvent, Conversation, Message, Site, Visitor
    from app.db import connection, database

    fill_chat._base_rows(data / "lumnar.db", datetime.now(timezone.utc).replace(tzinfo=None))
    app = create_app({"ENV_NAME": "development", "DATA_DIR": data, "SECRET_KEY": fill_chat.SECRET_KEY,
                      "MASTER_KEYS": fill_chat.MASTER_KEYS})
    paths = []
    with app.app_context(), connection(), database.atomic():
        site = Site.get(Site.site_key == fill_chat.SITE_KEY)
        for i in range(n):
            v = Visitor.create(site=site, first_page_url="http://127.0.0.1/shop")
            c = Conversation.create(workspace=site.workspace_id, site=site, visitor=v,
                                    last_preview=f"question {i}", unread_count=1)
            m = Message.create(conversation=c, workspace_id=site.workspace_id, sender="visitor",
                               body=f"question {i}")
            e = ChatEvent.create(workspace_id=site.workspace_id, conversation_id=c.id,
                                 kind="message", ref_id=m.id, actor="visitor")
            paths.append(f"/sse/visitor?ticket={service.stream_ticket(c.id, v)}&after={e.id}")
    database.close()
    return paths


async def measure(port: int, pid: int, paths: list[str]) -> dict:
    await asyncio.sleep(2)
    before = rss_kb(pid)
    streams = [hc.SSEStream(port, path) for path in paths]
    opened_at = time.monotonic()
    counts = await hc.open_streams(streams)
    opened = time.monotonic() - opened_at
    await asyncio.sleep(3)  # presence written, first checks spread
    after = rss_kb(pid)
    cpu = cpu_seconds(pid)
    await asyncio.sleep(IDLE_SECONDS)
    idle_cpu = (cpu_seconds(pid) - cpu) / IDLE_SECONDS
    ok = counts.get(200, 0)
    await hc.close_streams(streams)
    return {"streams": ok, "statuses": counts, "open_s": round(opened, 2), "rss_before_kb": before,
            "rss_after_kb": after, "kb_per_stream": round((after - before) / max(ok, 1), 1),
            "idle_cpu_pct_of_core": round(100 * idle_cpu, 2)}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    env = {"LUMNAR_SECRET_KEY": fill_chat.SECRET_KEY, "LUMNAR_MASTER_KEYS": fill_chat.MASTER_KEYS,
           "LUMNAR_RATELIMIT": "0"}
    data = Path(tempfile.mkdtemp(prefix="lumnar-stream-cost-"))
    fill_chat.migrated_schema(data)
    paths = seed(data, n)
    with run_server("app.asgi:app", env=env, data=str(data)) as server:
        result = asyncio.run(measure(server.port, server.pid, paths))
    for key, value in result.items():
        print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
