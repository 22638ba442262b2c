"""`flask backup` and `flask restore`: a backup taken while the chat is being written is whole
and brings every row back; it is private and holds no keys; a restore refuses while Lumnar
runs and refuses a file that is not a sound Lumnar database, changing nothing."""

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.insight import service as insight
from tests.chat_fixtures import (  # noqa: F401  (fixtures, used by their names)
    WidgetVisitor,
    conversation_fixture,
    online_fixture,
    png_bytes,
    site_fixture,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import build_app, db_state
from tests.mailcatcher import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 30


def pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def wait_until(check, what: str, timeout: float = STARTUP_SECONDS):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause(0.05)
    return result


def cli(app, *args):
    return app.test_cli_runner().invoke(args=[str(a) for a in args])


def backup(app) -> Path:
    # The fixtures' page views and events sit in this process's usage counts until the
    # background flush writes them, every few seconds: write them now, or they land in the
    # live file after the backup and a restore's row counts differ by them.
    with app.app_context():
        insight.flush()
    result = cli(app, "backup")
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1])


def read(path, sql, params=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def table_counts(path) -> dict:
    tables = [r[0] for r in read(path, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: read(path, f'SELECT count(*) FROM "{t}"')[0][0] for t in tables}


def messages(path) -> list:
    return read(path, "SELECT id, conversation_id, sender, body, created_at FROM message ORDER BY id")


def leftovers(app) -> list[str]:
    """Files a restore leaves beside the database (the kept copy of the replaced one)."""
    return sorted(p.name for p in Path(app.config["DATABASE"]).parent.glob("*.before-restore-*"))


class ChatWriter(threading.Thread):
    """A widget visitor sending messages through the real HTTP route until told to stop;
    `acked` holds the bodies the server answered 200 for (committed)."""

    def __init__(self, app, site_key, token):
        super().__init__(daemon=True)
        self.visitor = WidgetVisitor(app, site_key, token)
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        from app.db import database

        try:
            n = 0
            while not self.stop.is_set():
                body = f"live message {n}"
                response = self.visitor.send(body)
                assert response.status_code == 200, response.get_data(as_text=True)
                self.acked.append(body)
                n += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            if not database.is_closed():
                database.close()  # this thread's kept connection


def test_backup_under_live_chat_writes_is_whole_and_restore_brings_back_every_row(
        app, conversation, visitor):
    # Some of everything: several conversations, an attachment, then a steady stream.
    for i in range(30):
        guest = WidgetVisitor.arrive(app, visitor.site_key)
        assert guest.send(f"seed {i}").status_code == 200
    assert visitor.send("a picture", file=(png_bytes(), "p.png", "image/png")).status_code == 200

    writer = ChatWriter(app, visitor.site_key, visitor.token)
    writer.start()
    try:
        wait_until(lambda: writer.acked or writer.error, "the first live message")
        committed_before = list(writer.acked)
        path = backup(app)
        # Writes go on after the copy: the backup was taken in the middle of a live stream.
        after = len(writer.acked)
        wait_until(lambda: len(writer.acked) > after or writer.error, "a message after the backup")
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None, writer.error

    assert read(path, "PRAGMA integrity_check") == [("ok",)]
    in_backup = {r[3] for r in messages(path)}
    assert set(committed_before) <= in_backup  # every row committed before it started
    assert "seed 29" in in_backup and "a picture" in in_backup
    live = app.config["DATABASE"]
    assert len(messages(live)) > len(messages(path))  # the messages written after it

    backed_up = {"counts": table_counts(path), "messages": messages(path),
                 "attachments": read(path, "SELECT id, message_id, data FROM attachment"),
                 "users": read(path, "SELECT id, email, password_hash FROM user")}
    written_after = [b for b in writer.acked if b not in in_backup]
    assert written_after

    result = cli(app, "restore", path)
    assert result.exit_code == 0, result.output

    assert read(live, "PRAGMA integrity_check") == [("ok",)]
    assert table_counts(live) == backed_up["counts"]  # every table, row for row
    assert messages(live) == backed_up["messages"]
    assert read(live, "SELECT id, message_id, data FROM attachment") == backed_up["attachments"]
    assert read(live, "SELECT id, email, password_hash FROM user") == backed_up["users"]
    assert read(live, "PRAGMA journal_mode") == [("wal",)]  # still as the app runs it
    # The app itself (its kept connections) sees the restored database.
    from app.chat.models import Message
    from app.db import connection

    with app.app_context(), connection():
        assert Message.select().count() == len(backed_up["messages"])
    # The replaced database is kept, private, and undoes the restore.
    [kept] = leftovers(app)
    kept_path = Path(live).parent / kept
    assert stat.S_IMODE(kept_path.stat().st_mode) == 0o600
    assert {r[3] for r in messages(kept_path)} >= set(written_after)


def test_backup_is_private_and_holds_no_keys(app_config, tmp_path):
    # No SECRET_KEY given: the app makes data/secret_key, as on a real install.
    config = {k: v for k, v in app_config.items() if k != "SECRET_KEY"}
    app = build_app(config)
    from app.automations import vault
    from app.db import connection

    with app.app_context(), connection():
        vault.check_keys(app.config)  # makes data/master_keys and the vault's check row
    secret_key = (tmp_path / "secret_key").read_text().strip()
    master_keys = (tmp_path / "master_keys").read_text().split()
    assert secret_key and master_keys

    path = backup(app)
    assert path.parent == tmp_path / "backups"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no key file, no -wal
    content = path.read_bytes()
    for key in [secret_key, *master_keys]:
        assert key.encode() not in content
    assert read(path, "PRAGMA journal_mode") == [("delete",)]  # one self-contained file


def test_backup_keep_deletes_all_but_the_newest(app):
    made = [backup(app) for _ in range(3)]
    result = cli(app, "backup", "--keep", "2")
    assert result.exit_code == 0, result.output
    newest = Path(result.output.strip().splitlines()[0])
    assert sorted((Path(app.config["DATA_DIR"]) / "backups").iterdir()) == [made[2], newest]


def test_backup_keep_zero_is_refused_and_deletes_nothing(app):
    made = backup(app)
    result = cli(app, "backup", "--keep", "0")
    assert result.exit_code == 2
    assert list(made.parent.iterdir()) == [made]


# --- restore refuses while Lumnar runs ---------------------------------------------------------


def start(kind: str, data_dir: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMNAR_")}
    port = free_port()
    env.update(LUMNAR_DATA_DIR=str(data_dir), LUMNAR_SECRET_KEY="test-secret-key",
               LUMNAR_ENV="development", LUMNAR_BASE_URL=f"http://127.0.0.1:{port}",
               PYTHONUNBUFFERED="1")
    log = data_dir / f"{kind}.log"
    if kind == "web":
        args = [BIN / "uvicorn", "app.asgi:app", "--host", "127.0.0.1", "--port", str(port)]
    else:
        args = [BIN / "huey_consumer", "jobs.main.huey", "--workers", "1", "--worker-type",
                "thread"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(a) for a in args], cwd=ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def ready():
        assert proc.poll() is None, log.read_text()
        if kind == "web":
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        return "Huey consumer started" in log.read_text()

    try:
        wait_until(ready, f"the {kind} process to start")
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=STARTUP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("kind", ["web", "worker"])
def test_restore_refuses_while_lumnar_runs_and_changes_nothing(app, conversation, visitor, kind):
    path = backup(app)
    assert visitor.send("written after the backup").status_code == 200

    proc = start(kind, Path(app.config["DATA_DIR"]))
    try:
        before = db_state()
        result = cli(app, "restore", path)
        assert result.exit_code == 1
        assert "Lumnar is running" in result.output
        assert db_state() == before
        assert leftovers(app) == []
    finally:
        stop(proc)

    # Once it has stopped, the same restore goes through.
    result = cli(app, "restore", path)
    assert result.exit_code == 0, result.output
    assert "written after the backup" not in {r[3] for r in messages(app.config["DATABASE"])}


# --- restore refuses a file that is not a sound Lumnar database --------------------------------


def corrupt(good: Path, target: Path) -> None:
    """A backup with pages past the schema overwritten: SQLite opens it, the data is garbage."""
    data = bytearray(good.read_bytes())
    page = read(good, "PRAGMA page_size")[0][0]
    assert len(data) > 6 * page
    data[2 * page:len(data) - page] = bytes((i * 7 + 3) % 251 for i in range(len(data) - 3 * page))
    target.write_bytes(bytes(data))


def index_mismatch(good: Path, target: Path) -> None:
    """A backup whose two indexes of the message table point at each other's pages: every
    page reads fine, only the integrity check sees that the indexes do not match the rows."""
    target.write_bytes(good.read_bytes())
    roots = dict(read(target, "SELECT name, rootpage FROM sqlite_master WHERE type = 'index'"))
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA writable_schema = ON")
    for name, other in [("message_author_id", "message_conversation_id"),
                        ("message_conversation_id", "message_author_id")]:
        conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = ?", (roots[other], name))
    conn.commit()
    conn.close()


def not_lumnar(good: Path, target: Path) -> None:
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('hello')")
    conn.commit()
    conn.close()


def not_sqlite(good: Path, target: Path) -> None:
    target.write_bytes(b"this is not an SQLite database " * 500)


@pytest.mark.parametrize("make, says", [
    (corrupt, "malformed"),
    (index_mismatch, "integrity check failed: row 1 missing from index"),
    (not_lumnar, "not a Lumnar database"),
    (not_sqlite, "cannot be read as an SQLite database"),
])
def test_restore_refuses_a_file_that_is_not_a_sound_lumnar_database(
        app, conversation, tmp_path, make, says):
    bad = tmp_path / "candidate.db"
    make(backup(app), bad)
    before = db_state()
    result = cli(app, "restore", bad)
    assert result.exit_code == 1, result.output
    assert "not restored" in result.output and says in result.output
    assert db_state() == before
    assert leftovers(app) == []
    assert not list((tmp_path / "backups").glob("*.partial"))


@pytest.mark.parametrize("keys", ["other", "none"])
def test_restore_refuses_a_backup_the_current_master_keys_cannot_open(
        app, conversation, tmp_path, keys):
    from cryptography.fernet import Fernet

    from app import backup as backups
    from app.automations import vault
    from app.db import connection

    with app.app_context(), connection():
        vault.check_keys(app.config)  # the vault's check value, under data/master_keys
    path = backup(app)
    if keys == "other":  # the keys were replaced since, or the backup is from another install
        now = dict(app.config, MASTER_KEYS=Fernet.generate_key().decode())
    else:  # a fresh install (no vault yet) where the key file was not brought along
        from app.automations.models import VaultCheck

        with connection():
            VaultCheck.delete().execute()
        (tmp_path / "fresh").mkdir()
        now = dict(app.config, MASTER_KEYS="", DATA_DIR=tmp_path / "fresh")

    before = db_state()
    with pytest.raises(backups.BackupError, match="master keys configured now cannot open"):
        backups.restore(now, path)
    assert db_state() == before
    assert leftovers(app) == []
    assert not (tmp_path / "fresh" / "master_keys").exists()  # no useless key file made


def test_restore_over_an_unreadable_file_keeps_it_and_drops_its_stale_wal(app, conversation):
    path = backup(app)
    live = Path(app.config["DATABASE"])
    from app.db import database

    database.close()
    # A WAL left behind by the old file (a crash before its checkpoint): replayed onto the
    # restored file it would undo the restore, so it must go with the file it belongs to.
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("UPDATE message SET body = 'stale'")
    conn.commit()
    stale_wal = Path(f"{live}-wal").read_bytes()
    conn.close()
    broken = b"this is not an SQLite database " * 200
    live.write_bytes(broken)
    Path(f"{live}-wal").write_bytes(stale_wal)

    result = cli(app, "restore", path)
    assert result.exit_code == 0, result.output
    assert read(live, "PRAGMA integrity_check") == [("ok",)]
    assert messages(live) == messages(path)
    assert read(live, "PRAGMA journal_mode") == [("wal",)]
    # The broken file and its WAL are kept byte for byte, should anyone want to dig in them.
    kept, kept_wal = leftovers(app)
    assert (live.parent / kept).read_bytes() == broken
    assert (live.parent / kept_wal).read_bytes() == stale_wal


def test_restore_takes_a_backup_of_another_page_size(app, conversation, tmp_path):
    """SQLite cannot copy pages of another size into a WAL database; the restore then puts a
    copy of the file in place of the old one (the old WAL and index removed first)."""
    path = backup(app)
    other = tmp_path / "big-pages.db"
    other.write_bytes(path.read_bytes())
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("VACUUM")
    conn.close()
    assert read(other, "PRAGMA page_size") == [(8192,)]

    result = cli(app, "restore", other)
    assert result.exit_code == 0, result.output
    live = app.config["DATABASE"]
    assert read(live, "PRAGMA integrity_check") == [("ok",)]
    assert read(live, "PRAGMA page_size") == [(8192,)]
    assert table_counts(live) == table_counts(path)
    assert messages(live) == messages(path)


# --- on a schedule --------------------------------------------------------------------------


def table_checksums(path) -> dict:
    """Every table's rows, sorted, as one digest each (the restore drill's measure);
    SQLite's own FTS5 shadow tables are left to FTS5."""
    import hashlib

    tables = [r[0] for r in read(path, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND sql NOT LIKE 'CREATE VIRTUAL%'")]
    digests = {}
    for table in tables:
        rows = sorted(read(path, f'SELECT * FROM "{table}"'), key=repr)  # whatever its key
        digests[table] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
    return digests


def test_the_schedule_keeps_seven_daily_then_four_weekly_backups():
    from datetime import UTC, datetime, timedelta

    from app import backup as backups

    now = datetime(2026, 11, 28, 2, 37, tzinfo=UTC)
    made = [Path(backups.NAME.format(stamp=(now - timedelta(days=d, hours=h)).strftime("%Y%m%dT%H%M%S.%fZ")))
            for d in range(60) for h in (0, 5)]  # two a day for sixty days
    kept = backups.kept_by_schedule(made)
    assert len(kept) == backups.DAILY + backups.WEEKLY
    by_day = {}
    for path in made:
        day = backups.taken_at(path).date()
        by_day[day] = max(by_day.get(day, path), path)  # the names sort by time
    last_week = [now.date() - timedelta(days=d) for d in range(7)]
    assert {by_day[day] for day in last_week} <= kept  # the newest of each of the last 7 days
    older = [p for p in kept if backups.taken_at(p).date() not in last_week]
    assert len({backups.taken_at(p).isocalendar()[:2] for p in older}) == 4  # one a week
    assert all(p == by_day[backups.taken_at(p).date()] for p in kept)  # each its day's newest
    # What the retention page says: deleted data leaves the backups within 35 days.
    assert max((now - backups.taken_at(p)).days for p in kept) <= 35


def test_the_nightly_backup_is_verified_keyless_and_a_restore_drill_matches_every_table(
        app, conversation, visitor):
    from jobs.backups import nightly_backup

    assert visitor.send("a picture", file=(png_bytes(), "p.png", "image/png")).status_code == 200
    folder = Path(app.config["DATA_DIR"]) / "backups"
    folder.mkdir(exist_ok=True)
    stale = folder / "lumnar-20200101T000000.000000Z.db"  # long past the schedule
    stale.write_bytes(b"old")
    live = app.config["DATABASE"]
    before = table_checksums(live)

    with app.app_context():
        nightly_backup()
    [made] = [p for p in folder.iterdir() if p.name.endswith(".db")]
    assert not stale.exists()
    assert read(made, "PRAGMA integrity_check") == [("ok",)]
    assert sorted(p.name for p in folder.iterdir()) == [made.name]  # no key file beside it
    assert stat.S_IMODE(made.stat().st_mode) == 0o600

    assert visitor.send("written after the backup").status_code == 200
    assert table_checksums(live) != before
    result = cli(app, "restore", made)
    assert result.exit_code == 0, result.output
    assert table_checksums(live) == before  # every table: its rows and their contents
