"""Backups of the one database file and restoring one: `flask backup`, `flask restore FILE`.

A backup is an online copy made with SQLite's backup API: one read transaction copies every
page, so the copy is the database as it was at one instant, while the web process and the
worker keep writing (WAL readers do not block writers). The copy is a single self-contained
file (rollback journal mode, no -wal beside it), checked with `PRAGMA integrity_check`,
created 0600 before a byte is written, in <data dir>/backups/. It holds only the database:
the master keys and the secret key are files beside it and are never copied, so a stolen
backup does not carry the keys that open its credentials.
"""

import os
import re
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from cryptography.fernet import InvalidToken

from app import db
from app.automations import vault
from app.automations.models import VaultCheck
from app.migrations import STEPS

BACKUP_DIR = "backups"
NAME = "lumnar-{stamp}.db"
NAME_RE = re.compile(r"^lumnar-\d{8}T\d{6}\.\d{6}Z\.db$")
# The table that marks a Lumnar database (app/migrations.py writes one row per step).
MIGRATIONS_TABLE = "schema_version"
TIMEOUT = 30  # seconds to wait for a lock held by another connection (a long write)


class BackupError(RuntimeError):
    pass


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _new_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 (refusing to reuse one): the copy is never readable
    by others, not even for the moment a chmod after writing would leave open."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _problems(path: Path) -> list[str]:
    conn = sqlite3.connect(path, timeout=TIMEOUT)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


def _copy(source: Path, target: Path) -> None:
    """Copy the database at `source` into the new 0600 file `target`, as one file, checked.
    A copy that fails its check is deleted, never left to be mistaken for a backup."""
    _new_private_file(target)
    try:
        src = sqlite3.connect(source, timeout=TIMEOUT)
        try:
            dst = sqlite3.connect(target)
            try:
                # pages=-1: every page in one step, under one read transaction. Step by step,
                # a write by another connection between steps restarts the copy, which under
                # a steady chat load might never finish.
                src.backup(dst, pages=-1)
            finally:
                dst.close()
        finally:
            src.close()
        # The copied header still says WAL; switch the copy to a rollback journal so that it
        # is one self-contained file (any -wal/-shm SQLite makes meanwhile take its 0600 mode
        # and are removed when the connection closes).
        conn = sqlite3.connect(target)
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()
        problems = _problems(target)
        if problems:
            raise BackupError("integrity check failed: " + "; ".join(problems[:5]))
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_dir(cfg) -> Path:
    return Path(cfg["DATA_DIR"]) / BACKUP_DIR


def make_backup(cfg) -> Path:
    """Copy the live database into <data dir>/backups/lumnar-<UTC time>.db; returns its path."""
    live = Path(cfg["DATABASE"])
    if not live.is_file():
        # sqlite3 would create an empty database there and copy that.
        raise BackupError(f"there is no database at {live}")
    folder = backup_dir(cfg)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = folder / NAME.format(stamp=_stamp())
    # Written under a name no listing takes for a backup, renamed once it has passed its
    # check: a copy cut short by a crash is never mistaken for a good one.
    partial = final.with_name(final.name + ".partial")
    _copy(live, partial)
    os.replace(partial, final)
    _fsync_dir(folder)
    return final


def backups(cfg) -> list[Path]:
    """The backups `make_backup` wrote, oldest first (the names sort by time)."""
    folder = backup_dir(cfg)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NAME_RE.match(p.name))


def prune(cfg, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups; returns the deleted paths."""
    doomed = backups(cfg)[:-keep] if keep > 0 else backups(cfg)
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


# --- on a schedule ---------------------------------------------------------------------------

DAILY, WEEKLY = 7, 4  # the worker's nightly backups kept: the last 7 days', then 4 weeks'


def taken_at(path: Path) -> datetime:
    return datetime.strptime(path.name[len("lumnar-"):-len(".db")], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def kept_by_schedule(paths: list[Path], now: datetime | None = None) -> set[Path]:
    """Of these backups, the ones the schedule keeps: the newest of each of the last DAILY
    days, then the newest of each ISO week for WEEKLY weeks before those days, none older
    than 35 days (7 + 4 x 7), so data deleted from Lumnar is gone from its backups by then.
    `now`: the newest backup's time unless given."""
    if not paths:
        return set()
    now = now or max(taken_at(p) for p in paths)
    today = now.date()
    oldest = today - timedelta(days=DAILY + 7 * WEEKLY)
    newest_of_day: dict = {}
    for path in sorted(paths):  # oldest first: the last one seen for a day is its newest
        newest_of_day[taken_at(path).date()] = path
    daily = {day for day in newest_of_day if today - day < timedelta(days=DAILY)}
    kept = {newest_of_day[day] for day in daily}
    newest_of_week: dict = {}
    for day in sorted(newest_of_day):
        if day not in daily and day > oldest:
            newest_of_week[day.isocalendar()[:2]] = newest_of_day[day]
    kept |= {newest_of_week[week] for week in sorted(newest_of_week, reverse=True)[:WEEKLY]}
    return kept


def scheduled_backup(cfg) -> tuple[Path, list[Path]]:
    """The worker's nightly backup: a new verified copy (no key files), then every backup
    the schedule does not keep is deleted. Returns the new copy and the deleted ones."""
    made = make_backup(cfg)
    every = backups(cfg)
    keep = kept_by_schedule(every) | {made}
    doomed = [path for path in every if path not in keep]
    for path in doomed:
        path.unlink(missing_ok=True)
    return made, doomed


# --- restore ---------------------------------------------------------------------------------


def _check_restorable(path: Path, cfg) -> None:
    """Refuse a (checked) copy that is not a Lumnar database this code can run on."""
    conn = sqlite3.connect(path, timeout=TIMEOUT)
    try:
        has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (MIGRATIONS_TABLE,)).fetchone()
        if not has_table:
            raise BackupError(f"it is not a Lumnar database (it has no {MIGRATIONS_TABLE} table)")
        version = conn.execute(f"SELECT max(version) FROM {MIGRATIONS_TABLE}").fetchone()[0] or 0
        vault_row = _vault_check_token(conn)
    finally:
        conn.close()
    known = max(step[0] for step in STEPS)
    if version > known:
        raise BackupError(f"it was made by a newer Lumnar (schema {version}; this one knows "
                          f"up to {known}): restore it with that version")
    if vault_row is not None:
        _check_master_keys(vault_row, cfg)


def _vault_check_token(conn):
    table = VaultCheck._meta.table_name
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone():
        return None
    row = conn.execute(f'SELECT token FROM "{table}" LIMIT 1').fetchone()
    return None if row is None else bytes(row[0])


def _check_master_keys(token: bytes, cfg) -> None:
    """The app refuses to start on a database its master keys cannot open: find that out
    before the database is replaced, not after."""
    # With no keys configured at all, loading them would make a fresh key file, which cannot
    # open this backup either: say so without writing one.
    configured = cfg.get("MASTER_KEYS") or (Path(cfg["DATA_DIR"]) / vault.KEY_FILE).exists()
    try:
        ok = bool(configured) and vault.master(cfg).decrypt(token) == vault.CHECK_PLAINTEXT
    except (InvalidToken, vault.VaultError):
        ok = False
    if not ok:
        raise BackupError("the master keys configured now cannot open its credentials; set "
                          "LUMNAR_MASTER_KEYS (or data/master_keys) to the keys in use when it "
                          "was made, newest first, then restore again")


def _write_into_live(source: Path, live: Path) -> None:
    """Replace the live database's content by `source`'s, in one write transaction through
    SQLite: the WAL and its index stay valid, a crash midway leaves the old database whole,
    and any connection still open (one this process keeps) sees the restored data."""
    src = sqlite3.connect(source, timeout=TIMEOUT)
    try:
        dst = sqlite3.connect(live, timeout=TIMEOUT)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            dst.close()
    finally:
        src.close()


def _swap_in(source: Path, live: Path) -> None:
    """For a live file SQLite cannot open at all (a broken header): put a copy of `source`
    in its place. Its -wal and -shm belong to the old file and would be replayed onto the new
    one, so they go first; nothing else has the database open (exclusive_use)."""
    staged = live.with_name(live.name + f".restoring-{_stamp()}")
    _copy(source, staged)
    conn = sqlite3.connect(staged)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # as the app runs it
    finally:
        conn.close()
    for leftover in (Path(f"{live}-wal"), Path(f"{live}-shm"), Path(f"{live}-journal")):
        leftover.unlink(missing_ok=True)
    os.replace(staged, live)
    _fsync_dir(live.parent)


def _keep_current(live: Path, stamp: str) -> Path | None:
    """Keep the database being replaced as <db>.before-restore-<time>, so that a wrong restore
    can be undone by restoring that file. A file SQLite cannot read is kept byte for byte,
    WAL included."""
    if not live.exists():
        return None
    kept = live.with_name(f"{live.name}.before-restore-{stamp}")
    try:
        _copy(live, kept)
    except (sqlite3.DatabaseError, BackupError):
        for suffix in ("", "-wal"):
            part = Path(f"{live}{suffix}")
            if part.exists():
                target = Path(f"{kept}{suffix}")
                _new_private_file(target)
                shutil.copyfile(part, target)
    return kept


def restore(cfg, path) -> Path | None:
    """Make the database at `path` the live database; returns where the replaced one was
    kept. Refuses (BackupError, db.DatabaseInUse) and changes nothing when Lumnar is running
    or the file is not a sound Lumnar database."""
    path = Path(path)
    live = Path(cfg["DATABASE"])
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    if path.resolve() == live.resolve():
        raise BackupError(f"{path} is the live database itself")
    with db.exclusive_use(live):
        stamp = _stamp()
        folder = backup_dir(cfg)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Checked on a private copy: the file handed to us could change or be a WAL database
        # whose -wal sits beside it, and the copy is what gets restored.
        staged = folder / f"restore-{stamp}.db.partial"
        try:
            try:
                _copy(path, staged)
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"it cannot be read as an SQLite database ({exc})") from None
            _check_restorable(staged, cfg)
            kept = _keep_current(live, stamp)
            try:
                _write_into_live(staged, live)
            except sqlite3.DatabaseError as exc:
                if getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                    raise BackupError("another program (not Lumnar) is writing to the database; "
                                      "close it and restore again") from None
                _swap_in(staged, live)
        finally:
            staged.unlink(missing_ok=True)
    return kept


# --- command line ----------------------------------------------------------------------------


def register_cli(app) -> None:
    @app.cli.command("backup")
    @click.option("--keep", type=click.IntRange(min=1), default=None,
                  help="Then delete all but the newest N backups.")
    def backup_command(keep):
        """Copy the database into <data dir>/backups/ (the keys are not included)."""
        try:
            path = make_backup(app.config)
        except (BackupError, sqlite3.Error, OSError) as exc:
            raise click.ClickException(f"backup failed: {exc}") from None
        click.echo(str(path))
        if keep:
            for old in prune(app.config, keep):
                click.echo(f"deleted {old}", err=True)

    @app.cli.command("restore")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    def restore_command(file):
        """Make the database backup FILE the live database (with Lumnar stopped)."""
        try:
            kept = restore(app.config, file)
        except (BackupError, db.DatabaseInUse, sqlite3.Error, OSError) as exc:
            raise click.ClickException(f"not restored: {file}: {exc}") from None
        if kept:
            click.echo(f"the replaced database is kept as {kept}")
        click.echo(f"restored {file}; if it came from an older Lumnar, run "
                   "`flask --app app migrate` before starting")
