"""What an open, idle visitor stream costs the web process: memory, and CPU while nobody talks.

Not a test (run by hand: `.venv/bin/python -m tests.bench.stream_cost [N]`). Starts uvicorn
(uvloop, httptools) on a throw-away database, writes one site and N open conversations,
opens N visitor streams with the bench's own light client, and prints the server's RSS
before and after (KB per stream), how fast the streams opened (per second, and the server's
CPU per open) and its CPU over an idle stretch (percent of one core).

With STREAM_COST_PROFILE=<folder> set, py-spy (STREAM_COST_PYSPY, default /tmp/spy/bin/py-spy)
samples the server while the streams open and while they idle, only while it holds the
interpreter lock, and writes open.txt and idle.txt there (collapsed stacks).
"""

import asyncio
import os
import subprocess
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
    from app.chat import events, live
    from app.chat.models import Conversation, Message
    from app.db import connection, database
    from app.widget import service as widget_service
    from app.widget.models import Site, Visitor

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
            e = live.Written(None, site.workspace_id, c.id, "message", m.id, "visitor")
            events.record([e], tell=False)
            paths.append(f"/sse/visitor?ticket={widget_service.stream_ticket(c, v)}&after={e.seq}")
    database.close()
    return paths


def profiler(pid: int, name: str, seconds: float | None = None):
    """py-spy sampling `pid` (GIL holders only) into <STREAM_COST_PROFILE>/<name>.txt, or None."""
    folder = os.environ.get("STREAM_COST_PROFILE")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = os.environ.get("STREAM_COST_PYSPY", "/tmp/spy/bin/py-spy")
    command = [spy, "record", "--pid", str(pid), "--gil", "--format", "raw", "--rate", "200",
               "--output", str(Path(folder) / f"{name}.txt")]
    if seconds is not None:
        command += ["--duration", str(int(seconds))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(proc) -> None:
    if proc is not None:
        proc.send_signal(2)  # py-spy writes its file on an interrupt
        proc.wait(timeout=30)


async def measure(port: int, pid: int, paths: list[str]) -> dict:
    await asyncio.sleep(2)
    before = rss_kb(pid)
    streams = [hc.SSEStream(port, path) for path in paths]
    spy = profiler(pid, "open")
    if spy is not None:
        await asyncio.sleep(1)  # py-spy attached
    cpu_at_open = cpu_seconds(pid)
    opened_at = time.monotonic()
    counts = await hc.open_streams(streams)
    opened = time.monotonic() - opened_at
    open_cpu = cpu_seconds(pid) - cpu_at_open
    stop_profiler(spy)
    await asyncio.sleep(3)  # presence written, first checks spread
    after = rss_kb(pid)
    spy = profiler(pid, "idle", IDLE_SECONDS)
    cpu = cpu_seconds(pid)
    await asyncio.sleep(IDLE_SECONDS)
    idle_cpu = (cpu_seconds(pid) - cpu) / IDLE_SECONDS
    stop_profiler(spy)
    ok = counts.get(200, 0)
    await hc.close_streams(streams)
    return {"streams": ok, "statuses": counts, "open_s": round(opened, 2),
            "opened_per_s": round(ok / opened) if opened else 0,
            "server_cpu_ms_per_open": round(1000 * open_cpu / max(ok, 1), 2),
            "rss_before_kb": before, "rss_after_kb": after,
            "kb_per_stream": round((after - before) / max(ok, 1), 1),
            "idle_cpu_pct_of_core": round(100 * idle_cpu, 2)}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
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
