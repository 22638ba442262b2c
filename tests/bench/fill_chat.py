"""A chat database at scale for the benchmarks: one workspace with 100,000 conversations and
1,000,000 messages (plus their chat events), written with executemany straight into the
tables. The FTS triggers stay in place, so the search index is built exactly as the app
builds it.

The filled file is cached under data/bench/, keyed by a hash of the migrated schema, of this
file's code, of the sizes and of the week (dates are relative to the build); `prepare(folder)`
copies it into a server's data folder. Run alone, it builds (or finds) the cache:
`python tests/bench/fill_chat.py [--conversations N --messages M]`.
"""

import argparse
import ast
import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
CACHE = ROOT / "data" / "bench"

CONVERSATIONS = 100_000
MESSAGES = 1_000_000

# What the benchmark needs to know about the filled database.
SECRET_KEY = "lumnar-bench-secret-key-not-for-production"
MASTER_KEYS = "g1V9mRrUBpfXCwtsKsCth45N54keXs5eMImSos5SWi0="  # a Fernet key, for the bench only
EMAIL = "agent@bench.example"
PASSWORD = "bench-password-4711"
SITE_KEY = "site_bench0000000000"
WORKSPACE_ID = 1
SITE_ID = 1
USER_ID = 1

# Words a search is benchmarked with, and the share of messages each appears in (roughly).
COMMON_WORD = "order"  # in ~11 % of messages
RARE_WORD = "invoice"  # in ~0.4 % of messages

REAL_WORDS = (
    "hi hello thanks please order help can you my the is it a to and for not on with this "
    "delivery shipping account password price size colour color return exchange website app "
    "today tomorrow yesterday week payment card paypal discount code coupon stock available "
    "email phone address parcel tracking number delayed broken damaged wrong missing item "
    "refund cancel subscription upgrade plan trial login error page checkout basket cart "
    "invoice receipt warranty repair store opening hours weekend holiday gift voucher"
).split()


def _log(msg: str) -> None:
    print(f"[fill] {msg}", file=sys.stderr, flush=True)


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """~5,000 words with Zipf-like weights; a few real words at fixed ranks for the searches."""
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "si", "po", "de", "fa", "gu", "ba", "ve",
                 "zo", "chi", "lan", "mor", "tes", "qui", "dor", "pel", "sun", "var", "nix"]
    synthetic = set()
    while len(synthetic) < 5000:
        synthetic.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    words = [w for w in REAL_WORDS if w not in (COMMON_WORD, RARE_WORD)]
    words += sorted(synthetic - set(REAL_WORDS))
    words.insert(12, COMMON_WORD)  # rank 12, ~12 words a message: in ~11 % of messages
    words.insert(400, RARE_WORD)
    weights = [1.0 / (rank + 3) ** 1.05 for rank in range(len(words))]
    return words, list(accumulate(weights))


def _ts(dt: datetime) -> str:
    return str(dt)  # what sqlite3's default adapter (used by peewee) stores


def migrated_schema(folder: Path) -> str:
    env = {**os.environ, "LUMNAR_ENV": "development", "LUMNAR_DATA_DIR": str(folder),
           "LUMNAR_SECRET_KEY": SECRET_KEY, "LUMNAR_MASTER_KEYS": MASTER_KEYS}
    subprocess.run([str(BIN / "flask"), "--app", "app", "migrate"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    with sqlite3.connect(folder / "lumnar.db") as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    return "\n".join(f"{t} {n} {s}" for t, n, s in rows)


def _code_fingerprint() -> str:
    """This file's code without comments or docstrings: editing words does not force a rebuild."""
    tree = ast.parse(Path(__file__).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def cache_key(schema: str, conversations: int, messages: int) -> str:
    h = hashlib.sha256()
    h.update(schema.encode())
    h.update(_code_fingerprint().encode())
    h.update(f"{conversations}/{messages}".encode())
    # Dates are relative to the build (this month's messages, retention): rebuild every week.
    h.update(datetime.now(timezone.utc).strftime("%G-W%V").encode())
    return h.hexdigest()[:16]


def _base_rows(path: Path, at: datetime) -> None:
    """The agent, workspace and site, through the app's own models (so new columns get their
    defaults): ids 1, 1 and 1 on the fresh database."""
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from app.accounts import passwords
    from app.accounts.models import Membership, User, Workspace
    from app.db import connection, database
    from app.widget.models import Site

    app = create_app({"ENV_NAME": "development", "DATA_DIR": path.parent, "DATABASE": str(path),
                      "SECRET_KEY": SECRET_KEY, "MASTER_KEYS": MASTER_KEYS})
    with app.app_context(), connection(), database.atomic():
        user = User.create(name="Bea Bench", email=EMAIL, email_verified_at=at, created_at=at,
                           password_hash=passwords.hash_password(PASSWORD))
        workspace = Workspace.create(name="Bench Shop", created_at=at)
        Membership.create(workspace=workspace, user=user, role=Membership.OWNER, created_at=at)
        site = Site.create(workspace=workspace, name="Bench shop", site_key=SITE_KEY,
                           allowed_origins="http://127.0.0.1", created_at=at)
    assert (user.id, workspace.id, site.id) == (USER_ID, WORKSPACE_ID, SITE_ID)


def fill(path: Path, conversations: int, messages: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    words, cum = _vocabulary(rng)
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    start = now - timedelta(days=170)  # inside the default 180-day retention
    span = (now - start).total_seconds()

    _base_rows(path, start)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("PRAGMA synchronous=off")
    db.execute("PRAGMA cache_size=-400000")
    # The triggers index one row at a time (~100 µs a row in bulk); indexing everything at once
    # with FTS5's 'rebuild' gives the same index in seconds. They are put back, unchanged, below.
    triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                          "AND tbl_name = 'message'").fetchall()
    db.execute("BEGIN")
    for name, _ in triggers:
        db.execute(f'DROP TRIGGER "{name}"')

    # Messages per conversation: 1..19, mean messages/conversations, shuffled.
    mean = messages / conversations
    counts = [max(1, min(int(2 * mean) - 1, int(rng.expovariate(1 / mean)) + 1)) for _ in range(conversations)]
    diff = messages - sum(counts)
    i = 0
    while diff:
        j = i % conversations
        if diff > 0 and counts[j] < 2 * mean - 1:
            counts[j] += 1
            diff -= 1
        elif diff < 0 and counts[j] > 1:
            counts[j] -= 1
            diff += 1
        i += 1
    starts = sorted(rng.random() * span for _ in range(conversations))

    # A message's client-made id (exactly-once retries): none for the stored history.
    message_columns = {row[1] for row in db.execute("PRAGMA table_info(message)")}
    extra_message, extra_values = (", client_id", ", ''") if "client_id" in message_columns else ("", "")
    visitors, convs, msgs, events = [], [], [], []
    message_id = event_id = 0
    batch = 50_000
    rand = rng.random
    # Texts drawn from a pool a fifth as large as the messages: same word statistics, 5× faster.
    n_bodies = max(1, messages // 5)
    bodies = [" ".join(rng.choices(words, cum_weights=cum, k=3 + int(rand() * 20)))
              for _ in range(n_bodies)]

    def flush():
        db.executemany("INSERT INTO visitor (id, site_id, public_id, name, email, first_page_url, "
                       "first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", visitors)
        db.executemany("INSERT INTO conversation (id, workspace_id, site_id, visitor_id, status, "
                       "assignee_id, started_page_url, created_at, last_activity_at, last_preview, "
                       "unread_count, agent_read_message_id, over_limit, away_notice_at, "
                       "away_pending) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, 0)", convs)
        db.executemany("INSERT INTO message (id, conversation_id, workspace_id, sender, author_id, "
                       f"body, created_at, over_limit{extra_message}) VALUES (?, ?, ?, ?, ?, ?, ?, 0"
                       f"{extra_values})", msgs)
        # One workspace: its events' numbers are their ids (app/chat/events.py).
        db.executemany("INSERT INTO chat_event (id, seq, workspace_id, conversation_id, kind, "
                       "ref_id, actor, created_at) VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)", events)
        visitors.clear(), convs.clear(), msgs.clear(), events.clear()

    t0 = time.monotonic()
    for c in range(conversations):
        cid = c + 1
        began = start + timedelta(seconds=starts[c])
        page = f"https://shop.example/products/{rng.randrange(5000)}"
        visitors.append((cid, SITE_ID, f"bv{rng.getrandbits(96):024x}"[:22],
                         "" if rand() < 0.7 else f"Visitor {cid}",
                         f"visitor{cid}@mail.example" if rand() < 0.5 else "", page,
                         _ts(began), _ts(began)))
        at = began
        last_visitor = last_any = 0
        preview = ""
        for k in range(counts[c]):
            message_id += 1
            event_id += 1
            at += timedelta(seconds=5 + int(rand() * 120))
            sender = "visitor" if (k == 0 or rand() < 0.55) else "agent"
            body = bodies[int(rand() * n_bodies)]
            ts = _ts(at)
            msgs.append((message_id, cid, WORKSPACE_ID, sender, USER_ID if sender == "agent" else None,
                         body, ts))
            events.append((event_id, WORKSPACE_ID, cid, "message", message_id, sender, ts))
            last_any = message_id
            if sender == "visitor":
                last_visitor = message_id
            preview = body[:140]
        recent = (now - at) < timedelta(days=3)
        status = "open" if recent or rand() < 0.05 else "resolved"
        unread = 1 if status == "open" and last_visitor == last_any and rand() < 0.5 else 0
        read_up_to = last_any if not unread else 0
        if status == "resolved":
            event_id += 1
            events.append((event_id, WORKSPACE_ID, cid, "status", 0, "", _ts(at)))
        convs.append((cid, WORKSPACE_ID, SITE_ID, cid, status, USER_ID if rand() < 0.3 else None, page,
                      _ts(began), _ts(at), preview, unread, read_up_to))
        if len(msgs) >= batch:
            flush()
            if message_id % 200_000 < batch + 20:
                _log(f"{cid:,} conversations, {message_id:,} messages, {time.monotonic() - t0:.0f} s")
    flush()
    db.execute("INSERT INTO event_counter (workspace_id, seq) VALUES (?, ?) ON CONFLICT "
               "(workspace_id) DO UPDATE SET seq = excluded.seq", (WORKSPACE_ID, event_id))
    _log(f"rows written in {time.monotonic() - t0:.0f} s; indexing for search")
    db.execute("INSERT INTO message_fts(message_fts) VALUES ('rebuild')")
    # Everything is indexed now: the app's indexing steps start after the last message.
    db.execute('UPDATE "search_index_state" SET "indexed_to" = '
               '(SELECT coalesce(max("id"), 0) FROM "message") WHERE "id" = 1')
    for _, sql in triggers:
        db.execute(sql)
    db.execute("COMMIT")
    # No ANALYZE: the app never runs it, so the query planner must work without statistics here too.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    _log(f"filled {conversations:,} conversations, {message_id:,} messages, {event_id:,} events "
         f"in {time.monotonic() - t0:.0f} s")


def filled_db(conversations: int = CONVERSATIONS, messages: int = MESSAGES) -> Path:
    """Path of the cached filled database, building it when the schema or this file changed."""
    with tempfile.TemporaryDirectory(prefix="lumnar-fill-") as tmp:
        schema = migrated_schema(Path(tmp))
        key = cache_key(schema, conversations, messages)
        stem = f"chat-{conversations}x{messages}"
        target = CACHE / f"{stem}-{key}.db"
        if target.exists():
            _log(f"using cached {target.relative_to(ROOT)}")
            return target
        _log(f"building {target.relative_to(ROOT)} ({conversations:,} conversations, {messages:,} messages)")
        work = Path(tmp) / "lumnar.db"
        fill(work, conversations, messages)
        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.glob(f"{stem}-*.db"):  # built from an older schema or generator
            old.unlink()
        partial = target.with_suffix(".partial")
        shutil.copyfile(work, partial)
        os.replace(partial, target)
    return target


def prepare(folder: Path, conversations: int = CONVERSATIONS, messages: int = MESSAGES) -> Path:
    """Copy the filled database into `folder` (a server's LUMNAR_DATA_DIR); returns its path."""
    source = filled_db(conversations, messages)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / "lumnar.db"
    t0 = time.monotonic()
    shutil.copyfile(source, dest)
    _log(f"copied {source.stat().st_size / 2**20:,.0f} MB in {time.monotonic() - t0:.1f} s")
    return dest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=CONVERSATIONS)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    args = parser.parse_args()
    print(filled_db(args.conversations, args.messages))


if __name__ == "__main__":
    main()
