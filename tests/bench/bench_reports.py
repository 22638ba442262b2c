"""Reports benchmark: the Reports page's 30-day view of a workspace with 100,000 conversations
in those 30 days (about 10 messages each, 1,000,000 messages and their chat events), beside a
floor: the bare SQL statements the page needs, run with sqlite3 on the same file.

Besides the busy workspace the database holds 20,000 of its conversations older than 30 days
(the 90-day view's) and a second workspace with 10,000 conversations in the same days, which
the page must pass over. Every answer is checked: a non-200 answer, or a report that does not
count exactly the conversations written, makes the goal missed.

`python tests/bench/bench_reports.py [--quick] [--samples N]`: progress on stderr, the table
on stdout. --quick: 10,000 conversations (never says more than "met only at this smaller
scale"). Building the database takes about a minute; it is thrown away afterwards."""

import argparse
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import chat_report, fill_chat  # noqa: E402
from tests.bench.harness import percentile, table  # noqa: E402

ZONE = "America/New_York"  # local days that are not UTC days, as most workspaces have
GOAL_MS = 500
SITES = ("Shop", "Blog", "Help centre")
AGENTS = ("Ann Agent", "Ben Agent", "Cleo Agent", "Dev Agent")
WORKSPACE, OTHER = 1, 2


def log(msg: str) -> None:
    print(f"[reports] {msg}", file=sys.stderr, flush=True)


def app_for(path: Path):
    from app import create_app

    return create_app({"ENV_NAME": "development", "DATA_DIR": path.parent, "DATABASE": str(path),
                       "SECRET_KEY": fill_chat.SECRET_KEY, "MASTER_KEYS": fill_chat.MASTER_KEYS,
                       "RATELIMIT_ENABLED": False})


def base_rows(path: Path, at: datetime) -> dict:
    """Workspace 1 (its owner, the bench's login, from fill_chat) with three sites and four
    more agents; workspace 2 with its owner and one site. Through the app's models."""
    from app.accounts.models import Membership, User, Workspace
    from app.db import connection, database
    from app.widget.models import Site

    fill_chat._base_rows(path, at)
    with app_for(path).app_context(), connection(), database.atomic():
        Workspace.update(timezone=ZONE).where(Workspace.id == WORKSPACE).execute()
        Site.update(name=SITES[0]).where(Site.id == fill_chat.SITE_ID).execute()
        sites = [fill_chat.SITE_ID] + [
            Site.create(workspace=WORKSPACE, name=name, allowed_origins="http://127.0.0.1").id
            for name in SITES[1:]]
        agents = [fill_chat.USER_ID]
        for i, name in enumerate(AGENTS):
            user = User.create(name=name, email=f"agent{i}@bench.example", password_hash="x",
                               email_verified_at=at)
            Membership.create(workspace=WORKSPACE, user=user, role=Membership.AGENT)
            agents.append(user.id)
        other_user = User.create(name="Olga Other", email="other@bench.example", password_hash="x")
        other = Workspace.create(name="Other shop", created_at=at)
        Membership.create(workspace=other, user=other_user, role=Membership.OWNER)
        other_site = Site.create(workspace=other, name="Other shop", allowed_origins="http://127.0.0.1")
    assert other.id == OTHER
    return {WORKSPACE: (sites, agents), OTHER: ([other_site.id], [other_user.id])}


def window_start(now: datetime, days: int) -> datetime:
    """The UTC time the last `days` local days began (the report's own bounds)."""
    tz = ZoneInfo(ZONE)
    today = now.replace(tzinfo=timezone.utc).astimezone(tz).date()
    first = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), tzinfo=tz)
    return first.astimezone(timezone.utc).replace(tzinfo=None)


def plan(rng, now: datetime, recent: int, older: int, other: int) -> list[tuple]:
    """(workspace, start) of every conversation, oldest first: `recent` and `other` inside the
    30-day window (an hour's margin at each end), `older` in the 60 days before it."""
    start30, start90 = window_start(now, 30), window_start(now, 90)
    inside = (start30 + timedelta(hours=1), now - timedelta(hours=1))

    def draw(n, lo, hi):
        span = (hi - lo).total_seconds()
        return [lo + timedelta(seconds=int(rng.random() * span)) for _ in range(n)]

    rows = [(WORKSPACE, t) for t in draw(recent, *inside)]
    rows += [(WORKSPACE, t) for t in draw(older, start90 + timedelta(hours=1), start30 - timedelta(hours=1))]
    rows += [(OTHER, t) for t in draw(other, *inside)]
    return sorted(rows, key=lambda r: r[1])


def fill(path: Path, recent: int, older: int, other: int, seed: int = 11) -> None:
    """Conversations as the chat writes them: the visitor first, then visitor and agent
    messages 5 to 125 s apart (about 10 in all), a message event each; 90 % answered (5 % of
    first replies by a former agent), 80 % resolved some minutes after the last message (a
    status event marked "resolved"; one in twenty unmarked, as older resolutions are)."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    people = base_rows(path, now - timedelta(days=100))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("PRAGMA synchronous=off")
    db.execute("BEGIN")
    visitors, convs, msgs, events = [], [], [], []
    message_id = 0
    seq = {WORKSPACE: 0, OTHER: 0}
    rand = rng.random
    ts = fill_chat._ts

    def flush():
        db.executemany("INSERT INTO visitor (id, site_id, public_id, name, email, first_page_url, "
                       "first_seen_at, last_seen_at) VALUES (?, ?, ?, '', '', '', ?, ?)", visitors)
        db.executemany("INSERT INTO conversation (id, workspace_id, site_id, visitor_id, status, "
                       "assignee_id, started_page_url, created_at, last_activity_at, last_preview, "
                       "unread_count, agent_read_message_id, over_limit, away_notice_at, "
                       "away_pending) VALUES (?, ?, ?, ?, ?, NULL, '', ?, ?, '', 0, 0, 0, NULL, 0)",
                       convs)
        db.executemany("INSERT INTO message (id, conversation_id, workspace_id, sender, author_id, "
                       "body, created_at, over_limit, client_id) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '')",
                       msgs)
        db.executemany("INSERT INTO chat_event (workspace_id, conversation_id, seq, kind, ref_id, "
                       "actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        visitors.clear(), convs.clear(), msgs.clear(), events.clear()

    for cid, (ws, began) in enumerate(plan(rng, now, recent, older, other), start=1):
        sites, agents = people[ws]
        site = sites[int(rand() * len(sites))]
        visitors.append((cid, site, f"rv{cid:020d}", ts(began), ts(began)))
        answered = rand() < 0.9
        at = began
        for k in range(2 + int(rand() * 17)):
            message_id += 1
            sender = "visitor" if (k == 0 or not answered or rand() < 0.5) else "agent"
            author = None
            if sender == "agent":
                author = None if rand() < 0.05 else agents[int(rand() * len(agents))]
            msgs.append((message_id, cid, ws, sender, author, "Do you ship teapots abroad?", ts(at)))
            seq[ws] += 1
            events.append((ws, cid, seq[ws], "message", message_id, sender, ts(at)))
            at += timedelta(seconds=5 + int(rand() * 120))
        status = "resolved" if rand() < 0.8 else "open"
        if status == "resolved":
            at += timedelta(seconds=60 + int(rand() * 3600))
            seq[ws] += 1
            events.append((ws, cid, seq[ws], "status", 0, "" if rand() < 0.05 else "resolved", ts(at)))
        convs.append((cid, ws, site, cid, status, ts(began), ts(at)))
        if len(msgs) >= 50_000:
            flush()
    flush()
    for ws, last in seq.items():
        db.execute("INSERT INTO event_counter (workspace_id, seq) VALUES (?, ?)", (ws, last))
    db.execute("COMMIT")
    # No ANALYZE: the app never runs it, so the planner works without statistics here too.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    log(f"filled {recent + older + other:,} conversations, {message_id:,} messages")


def signed_in(app):
    """A test client logged in as the busy workspace's owner, through the log-in form."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    answer = client.post("/login", data={"email": fill_chat.EMAIL, "password": fill_chat.PASSWORD,
                                         "csrf_token": token})
    assert answer.status_code == 303, answer.status_code
    return client


def add_messages(path: Path, n: int, seed: int) -> None:
    """`n` agent replies, as the chat stores them, to conversations of the busy workspace's
    last 30 days (the same ones for the same seed): the events a view then folds in."""
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    since = str(window_start(datetime.now(timezone.utc).replace(tzinfo=None), 30))
    lo, hi = db.execute("SELECT MIN(id), MAX(id) FROM conversation WHERE workspace_id = ? "
                        "AND created_at >= ?", (WORKSPACE, since)).fetchone()
    (seq,) = db.execute("SELECT seq FROM event_counter WHERE workspace_id = ?", (WORKSPACE,)).fetchone()
    (last_id,) = db.execute("SELECT MAX(id) FROM message").fetchone()
    at = fill_chat._ts(datetime.now(timezone.utc).replace(tzinfo=None))
    for i in range(1, n + 1):
        cid = rng.randint(lo, hi)
        db.execute("INSERT INTO message (id, conversation_id, workspace_id, sender, author_id, body, "
                   "created_at, over_limit, client_id) VALUES (?, ?, ?, 'agent', ?, 'More?', ?, 0, '')",
                   (last_id + i, cid, WORKSPACE, fill_chat.USER_ID, at))
        db.execute("INSERT INTO chat_event (workspace_id, conversation_id, seq, kind, ref_id, actor, "
                   "created_at) VALUES (?, ?, ?, 'message', ?, 'agent', ?)",
                   (WORKSPACE, cid, seq + i, last_id + i, at))
    db.execute("UPDATE event_counter SET seq = ? WHERE workspace_id = ?", (seq + n, WORKSPACE))
    db.execute("COMMIT")
    db.close()


def timed_get(client, url: str, expect: str) -> tuple[float, float, bool]:
    """Wall and CPU milliseconds of one GET (the test client runs it in this process), and
    whether it was a 200 holding `expect`."""
    t0, c0 = time.perf_counter(), time.process_time()
    answer = client.get(url)
    body = answer.get_data(as_text=True)
    took, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
    return took, cpu, answer.status_code == 200 and expect in body


def time_gets(client, url: str, samples: int, expect: str, before=None):
    """Sorted wall and CPU milliseconds of `samples` GETs (after two unmeasured ones),
    `before(i)` run untimed before each, and how many answers were not a 200 holding
    `expect`."""
    for _ in range(2):
        client.get(url)
    walls, cpus, bad = [], [], 0
    for i in range(samples):
        if before:
            before(i)
        took, cpu, ok = timed_get(client, url, expect)
        walls.append(took)
        cpus.append(cpu)
        bad += not ok
    return sorted(walls), sorted(cpus), bad


def machine_check() -> float:
    """How fast this machine is right now: the best of five sorts of 100,000 integers (a few
    milliseconds on an idle core; much more when other work shares it)."""
    rng = random.Random(3)
    values = [rng.randrange(10 ** 9) for _ in range(100_000)]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        sorted(values)
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


class Floor:
    """The statements the page runs for its numbers (as app/reports/service.py writes them),
    bare, with sqlite3 on a copy of the same database: no session, no Python figures, no
    template. The session's and the layout's own queries are not in it. Like the page, it
    remembers what each local day looked like at its last view (how many facts, the highest
    stamp), and asks each day for the facts written since (every fact on its first view)."""

    STAMP = ("UPDATE report_cursor SET stamp = stamp + 1 WHERE workspace_id = ?",
             "SELECT stamp FROM report_cursor WHERE workspace_id = ?")

    def __init__(self, path: Path):
        from app.reports import service

        with app_for(path).app_context():
            self.build, self.events = service.upsert_sql("ids"), service.upsert_sql("events")
            self.days_sql, self.labels_sql = service.days_sql, service.labels_sql
            self.days_params, self.batch = service.days_params, service.FIRST_BATCH
        self.keep, self.local_days = service.KEEP_DAYS, service.local_days
        self.seen = {}  # (start, end) of a local day -> its highest stamp at the last view
        self.db = sqlite3.connect(path, isolation_level=None)

    def stamp(self) -> int:
        self.db.execute(self.STAMP[0], (WORKSPACE,))
        return self.db.execute(self.STAMP[1], (WORKSPACE,)).fetchone()[0]

    def first_view(self) -> float:
        """Every recent conversation's facts made, in the app's batches, and the cursor."""
        since = str(datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=self.keep))
        t0 = time.perf_counter()
        (seq,) = self.db.execute("SELECT seq FROM event_counter WHERE workspace_id = ?",
                                 (WORKSPACE,)).fetchone()
        self.db.execute("INSERT INTO report_cursor (workspace_id, seq, member_ids, stamp) "
                        "VALUES (?, -1, '', 0)", (WORKSPACE,))
        after = 0
        while True:
            ids = [r[0] for r in self.db.execute(
                "SELECT id FROM conversation WHERE workspace_id = ? AND created_at >= ? AND id > ? "
                "ORDER BY id LIMIT ?", (WORKSPACE, since, after, self.batch))]
            if not ids:
                break
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(self.build, (WORKSPACE, since, after, ids[-1], self.stamp()))
            self.db.execute("COMMIT")
            after = ids[-1]
        self.db.execute("UPDATE report_cursor SET seq = ? WHERE workspace_id = ?", (seq, WORKSPACE))
        return (time.perf_counter() - t0) * 1000

    def view(self, days: int) -> tuple[float, int]:
        """One view: the cursor checks, new events folded in (if any), the reads. Returns the
        milliseconds and the number of facts the days hold."""
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        since = str(now - timedelta(days=self.keep))
        _, starts = self.local_days(ZONE, days, now)
        bounds = list(zip(starts, starts[1:], strict=False))
        t0 = time.perf_counter()
        (last,) = self.db.execute("SELECT seq FROM event_counter WHERE workspace_id = ?",
                                  (WORKSPACE,)).fetchone()
        (seq,) = self.db.execute("SELECT seq FROM report_cursor WHERE workspace_id = ?",
                                 (WORKSPACE,)).fetchone()
        if seq < last:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(self.events, (WORKSPACE, since, WORKSPACE, seq, last, self.stamp()))
            self.db.execute("UPDATE report_cursor SET seq = ? WHERE workspace_id = ?", (last, WORKSPACE))
            self.db.execute("COMMIT")
        self.db.execute("SELECT user_id FROM membership WHERE workspace_id = ?", (WORKSPACE,)).fetchall()
        self.db.execute("SELECT timezone, created_at FROM workspace WHERE id = ?", (WORKSPACE,)).fetchall()
        asked = [(lo, hi, self.seen.get((lo, hi), -1)) for lo, hi in bounds]
        found, changed = 0, set()
        for day, kind, a, b, *_ in self.db.execute(self.days_sql(len(asked)),
                                                   self.days_params(WORKSPACE, asked)):
            if kind == 0:
                found += a
                self.seen[bounds[day]] = b
            else:
                changed.add(day)
        if changed:
            with_facts = [asked[day] for day in sorted(changed)]
            self.db.execute(self.labels_sql(len(with_facts)), [
                v for lo, hi, after in with_facts for v in (WORKSPACE, lo, hi, after)]).fetchall()
        self.db.execute('SELECT id, name FROM site WHERE workspace_id = ? ORDER BY name, id',
                        (WORKSPACE,)).fetchall()
        self.db.execute('SELECT u.id, u.name FROM "user" u JOIN membership m ON m.user_id = u.id '
                        'WHERE m.workspace_id = ?', (WORKSPACE,)).fetchall()
        self.db.execute('SELECT id, name, created_at FROM label WHERE workspace_id = ? '
                        'ORDER BY name, id', (WORKSPACE,)).fetchall()
        return (time.perf_counter() - t0) * 1000, found

    def views(self, days: int, samples: int, before=None):
        """Sorted wall and CPU milliseconds of `samples` views, and the facts the last read."""
        for _ in range(2):
            self.view(days)
        walls, cpus, found = [], [], 0
        for i in range(samples):
            if before:
                before(i)
            c0 = time.process_time()
            took, found = self.view(days)
            walls.append(took)
            cpus.append((time.process_time() - c0) * 1000)
        return sorted(walls), sorted(cpus), found


def run(recent: int, older: int, other: int, samples: int, new_per_view: int) -> None:
    load_before, check_before = os.getloadavg()[0], machine_check()
    with tempfile.TemporaryDirectory(prefix="lumnar-bench-reports-") as tmp:
        folder = Path(tmp)
        t0 = time.monotonic()
        fill_chat.migrated_schema(folder)
        path = folder / "lumnar.db"
        fill(path, recent, older, other)
        copy = folder / "floor.db"
        shutil.copyfile(path, copy)
        log(f"database ready in {time.monotonic() - t0:.0f} s; measuring")
        client = signed_in(app_for(path))
        # The summary's first figure is the count of conversations: exactly those written.
        expect30 = f"<dt>Conversations</dt><dd>{recent}</dd>"
        expect90 = f"<dt>Conversations</dt><dd>{recent + older}</dd>"
        url30, url90 = "/dashboard/reports?days=30", "/dashboard/reports?days=90"
        cold, _, cold_ok = timed_get(client, url30, expect30)
        page30, cpu30, bad30 = time_gets(client, url30, samples, expect30)
        page90, _, bad90 = time_gets(client, url90, samples, expect90)
        csv30, _, bad_csv = time_gets(client, "/dashboard/reports.csv?days=30&by=agent", samples,
                                      "Ann Agent")
        busy, _, bad_busy = time_gets(client, url30, samples, expect30,
                                      before=lambda i: add_messages(path, new_per_view, i))

        floor = Floor(copy)
        floor_cold = floor.first_view()
        floor30, floor_cpu30, found30 = floor.views(30, samples)
        floor90, _, found90 = floor.views(90, samples)
        floor_busy, _, _ = floor.views(30, samples,
                                       before=lambda i: add_messages(copy, new_per_view, i))
        floor.db.close()
    load_after, check_after = os.getloadavg()[0], machine_check()

    bad = {"first view": int(not cold_ok), "30 days": bad30, "90 days": bad90, "CSV": bad_csv,
           "after new messages": bad_busy}
    clean = not any(bad.values()) and found30 == recent and found90 == recent + older
    p = percentile
    print(f"\nReports benchmark{' (QUICK: not the goal’s conditions)' if chat_report.below_scale else ''}: "
          f"{recent:,} conversations of one workspace in the last 30 days ({older:,} more in the "
          f"60 days before; {other:,} of another workspace in the same days), about 10 messages "
          f"each; {samples} GETs a row through the Flask test client, SQLite, one process. "
          f"Answers not 200 or not counting every conversation: "
          + ", ".join(f"{k} {v}" for k, v in bad.items())
          + f"; the floor read {found30:,} and {found90:,} facts. Load average {load_before:.1f} "
          f"before, {load_after:.1f} after ({os.cpu_count()} cores).")
    table("GET /dashboard/reports (the whole request: session, figures kept up to date, medians, "
          "SVG, template) vs the bare SQL statements it needs (sqlite3)", [
              ("first view: figures made for every conversation (once)", cold, floor_cold, "ms"),
              ("30 days, p50", p(page30, .5), p(floor30, .5), "ms"),
              ("30 days, p95", p(page30, .95), p(floor30, .95), "ms",
               chat_report.goal(p(page30, .95), "≤", GOAL_MS, " ms", clean=clean)),
              ("30 days, CPU time p50", p(cpu30, .5), p(floor_cpu30, .5), "ms"),
              (f"30 days after {new_per_view} new messages each view, p95", p(busy, .95),
               p(floor_busy, .95), "ms",
               chat_report.goal(p(busy, .95), "≤", GOAL_MS, " ms", clean=clean)),
              ("90 days, p50", p(page90, .5), p(floor90, .5), "ms"),
              ("90 days, p95", p(page90, .95), p(floor90, .95), "ms"),
              ("CSV by agent, 30 days, p50", p(csv30, .5), p(floor30, .5), "ms"),
              ("machine check: sorting 100,000 integers in Python, before / after", check_before,
               check_after, "ms"),
          ])


def main():
    parser = argparse.ArgumentParser(description="Reports benchmark (the 30-day view at scale).")
    parser.add_argument("--quick", action="store_true", help="10,000 conversations")
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    if args.quick:
        chat_report.below_scale = "quick run"
        run(10_000, 2_000, 1_000, args.samples, 100)
    else:
        run(100_000, 20_000, 10_000, args.samples, 100)


if __name__ == "__main__":
    main()
