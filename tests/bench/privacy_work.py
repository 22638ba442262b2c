"""The privacy benchmark's data and its measured processes (bench_privacy.py drives them).

- `expired_db()`: the chat benchmark's filled database (tests/bench/fill_chat.py: FTS5 index
  complete, `indexed_to` at the last message, so every delete goes through the index as in
  production) with every date moved back a year, past the site's 180-day retention. Cached
  beside the filled file.
- `bare_purge()`: the floor of the retention purge, plain sqlite3 on the same file.
- Run as `python tests/bench/privacy_work.py KIND`, it is one measured child process, which
  prints one JSON line: `purge` runs the worker's retention task (jobs/chat.py) as the Huey
  consumer would; `export` asks for a workspace export as the dashboard does and builds it
  as the worker's task does (jobs/privacy.py); `bare-export` is that export's floor.
  `--traced`: tracemalloc's peak too; `--cache-kb N`: SQLite's page cache held to N kB.

Memory is each child's peak RSS growth: the kernel's high-water mark (VmHWM) is reset to the
current RSS (`clear_refs` 5) just before the measured work, read just after, less VmRSS
before. A child process per figure, so that no earlier run's peak counts.
"""

import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import tracemalloc
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import fill_chat  # noqa: E402
from tests.bench.harness import BIN, ROOT  # noqa: E402

AGE_DAYS = 365  # every date moved back this far: past the default retention (180 days)
# What the retention purge leaves of a deleted conversation: nothing in the search index.
FTS_HITS = "SELECT count(*) FROM message_fts WHERE message_fts MATCH ?"


# --- the data -----------------------------------------------------------------------------------


def age(path: Path, days: int = AGE_DAYS) -> None:
    """Move every stored date of the filled chat back `days` days (the same text format)."""
    shift = f"-{days} days"
    columns = {"conversation": ("created_at", "last_activity_at"), "message": ("created_at",),
               "visitor": ("first_seen_at", "last_seen_at"), "chat_event": ("created_at",)}
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        for table, names in columns.items():
            sets = ", ".join(f'"{c}" = datetime("{c}", ?)' for c in names)
            db.execute(f'UPDATE "{table}" SET {sets}', (shift,) * len(names))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def expired_db(conversations: int, messages: int) -> Path:
    """The filled database with every conversation past its site's retention (cached)."""
    source = fill_chat.filled_db(conversations, messages)
    target = source.with_name(f"expired-{source.name}")
    if target.exists():
        return target
    for old in source.parent.glob(f"expired-chat-{conversations}x{messages}-*.db"):
        old.unlink()  # aged from an older fill
    partial = target.with_suffix(".partial")
    shutil.copyfile(source, partial)
    age(partial)
    os.replace(partial, target)
    return target


def copy_to(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / "lumnar.db"
    shutil.copyfile(source, dest)
    return dest


def counts(path: Path) -> dict:
    """Rows left, and search hits for the filled data's common word (none once it is purged)."""
    db = sqlite3.connect(path)
    try:
        out = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
               for t in ("message", "conversation", "visitor", "chat_event")}
        out["search_hits"] = db.execute(FTS_HITS, (fill_chat.COMMON_WORD,)).fetchone()[0]
        return out
    finally:
        db.close()


# --- floors -------------------------------------------------------------------------------------


def bare_purge(path: Path, batch: int) -> dict:
    """The retention purge with nothing but sqlite3 on the same file, the app's pragmas
    (foreign keys, WAL, synchronous=normal) and its FTS5 delete trigger: each site's expired
    conversations, `batch` at a time, their messages, events and the conversations in one
    transaction; then the visitors left with nothing. Returns seconds, CPU seconds, rows deleted."""
    from app.db import PRAGMAS

    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    for name, value in PRAGMAS.items():
        db.execute(f"PRAGMA {name} = {value}")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    deleted = {"message": 0, "conversation": 0, "visitor": 0}
    t0, c0 = time.perf_counter(), time.process_time()
    for site_id, days in db.execute("SELECT id, retention_days FROM site").fetchall():
        cutoff = str(now - timedelta(days=days))
        while True:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM conversation WHERE site_id = ? AND last_activity_at < ? LIMIT ?",
                (site_id, cutoff, batch))]
            if not ids:
                break
            marks = ",".join("?" * len(ids))
            db.execute("BEGIN IMMEDIATE")
            deleted["message"] += db.execute(
                f"DELETE FROM message WHERE conversation_id IN ({marks})", ids).rowcount
            db.execute(f"DELETE FROM chat_event WHERE conversation_id IN ({marks})", ids)
            deleted["conversation"] += db.execute(
                f"DELETE FROM conversation WHERE id IN ({marks})", ids).rowcount
            db.execute("COMMIT")
        deleted["visitor"] += db.execute(
            "DELETE FROM visitor WHERE site_id = ? AND last_seen_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM conversation c WHERE c.visitor_id = visitor.id)", (site_id, cutoff)).rowcount
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    db.close()
    return {"seconds": seconds, "cpu": cpu, **deleted}


# --- measured child processes -------------------------------------------------------------------


def _status(key: str) -> int:
    """A /proc/self/status figure in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


class Peak:
    """Peak RSS growth and wall time of the block; tracemalloc's peak too when asked (it slows
    Python's allocations down, so a traced run's time is not the figure)."""

    def __init__(self, traced: bool = False):
        self.traced = traced

    def __enter__(self):
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
            self.reset = True
        except OSError:  # an old kernel: the peak then includes start-up's
            self.reset = False
        self.rss0 = _status("VmRSS")
        if self.traced:
            tracemalloc.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.traced_peak = tracemalloc.get_traced_memory()[1] if self.traced else None
        if self.traced:
            tracemalloc.stop()
        self.rss_growth_kb = _status("VmHWM") - self.rss0

    def figures(self) -> dict:
        return {"seconds": self.seconds, "rss_growth_kb": self.rss_growth_kb,
                "hwm_reset": self.reset, "traced_peak_kb": (self.traced_peak // 1024
                                                            if self.traced_peak is not None else None)}


def child_purge() -> dict:
    """The worker's retention task in this process, as the consumer runs it (its app from the
    environment, the task's own context): wall times of its start and end, its CPU time."""
    from jobs.chat import purge_old_conversations
    from jobs.main import app  # noqa: F401  (builds the consumer's app, as huey_consumer does)

    c0 = time.process_time()
    start = time.time()
    purge_old_conversations.call_local()
    return {"start": start, "end": time.time(), "cpu": time.process_time() - c0}


def child_export(traced: bool, cache_kb: int | None) -> dict:
    """An owner's workspace export: asked for as the dashboard asks (the service's
    request_export), then built by the worker's task body in this process. cache_kb: SQLite's
    page cache held to this size instead of the app's (to see the memory beside it)."""
    if cache_kb:
        from app import db

        db.PRAGMAS["cache_size"] = -cache_kb
    from app.accounts.models import Membership, User
    from app.privacy.export import service
    from app.privacy.export.models import ExportRequest
    from jobs.context import task_context
    from jobs.main import app  # noqa: F401  (the consumer's app)
    from jobs.privacy import build_export

    with task_context():
        user = User.get(User.email == fill_chat.EMAIL)
        membership = Membership.get((Membership.user == user.id)
                                    & (Membership.workspace == fill_chat.WORKSPACE_ID))
        export_id = service.request_export(user, membership, ExportRequest.WORKSPACE).id
    with Peak(traced) as peak:
        build_export.call_local(export_id)
    with task_context():
        export = ExportRequest.get_by_id(export_id)
        path = service.folder() / export.filename
    return {**peak.figures(), "status": export.status, "rows": export.rows_written,
            "zip": str(path), "bytes": export.size}


# The floor's export: the same rows of the workspace's chat, as JSON lines.
BARE_EXPORT = {
    "visitors": "SELECT v.id, v.site_id, v.name, v.email, v.first_page_url, v.first_seen_at, "
                "v.last_seen_at FROM visitor v JOIN site s ON s.id = v.site_id "
                "WHERE s.workspace_id = ? ORDER BY v.id",
    "conversations": "SELECT id, site_id, visitor_id, status, assignee_id, started_page_url, "
                     "created_at, last_activity_at, over_limit FROM conversation "
                     "WHERE workspace_id = ? ORDER BY id",
    "messages": "SELECT id, conversation_id, sender, author_id, body, created_at, over_limit "
                "FROM message WHERE workspace_id = ? ORDER BY id",
}


def child_bare_export(db_path: str, zip_path: str, traced: bool, cache_kb: int | None) -> dict:
    """The export's floor: sqlite3 reads of the same visitors, conversations and messages,
    500 rows at a time, each row a JSON line in a deflated ZIP member; SQLite's page cache as
    large as the app's (or `cache_kb`)."""
    from app.db import PRAGMAS

    rows = 0
    with Peak(traced) as peak:
        db = sqlite3.connect(db_path)
        db.execute(f"PRAGMA cache_size = {-cache_kb if cache_kb else PRAGMAS['cache_size']}")
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, query in BARE_EXPORT.items():
                cursor = db.execute(query, (fill_chat.WORKSPACE_ID,))
                keys = [d[0] for d in cursor.description]
                with archive.open(f"{name}.jsonl", "w", force_zip64=True) as out:
                    while batch := cursor.fetchmany(500):
                        for row in batch:
                            out.write(json.dumps(dict(zip(keys, row, strict=True)),
                                                 ensure_ascii=False).encode() + b"\n")
                        rows += len(batch)
        db.close()
    return {**peak.figures(), "rows": rows, "bytes": Path(zip_path).stat().st_size}


def run_child(args: list, env: dict) -> dict:
    """Run this file as a child process with `args`; its JSON answer."""
    done = subprocess.run([str(BIN / "python"), __file__, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"privacy_work {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_child(args: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "python"), __file__, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer_of(proc: subprocess.Popen, what: str) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"privacy_work {what} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list) -> None:
    kind, *rest = argv
    traced = "--traced" in rest
    cache_kb = int(rest[rest.index("--cache-kb") + 1]) if "--cache-kb" in rest else None
    if kind == "purge":
        out = child_purge()
    elif kind == "export":
        out = child_export(traced, cache_kb)
    elif kind == "bare-export":
        out = child_bare_export(rest[0], rest[1], traced, cache_kb)
    else:
        raise SystemExit(f"unknown: {kind}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
