"""`flask vault rotate-master` and `flask vault rekey` killed midway, then run again: every
credential opens with the final keys, and none was encrypted twice into garbage.

The real CLI runs in a subprocess on a database with many rows, with no hook in the product:
the test watches the rows from its own connection and kills the command (SIGKILL) as soon as
it sees some of them changed, then reads what the killed command left behind (checked to be
some rows but not all) before running the command again.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.accounts.models import Workspace
from app.automations import vault
from app.automations.models import Credential, WorkspaceKey
from app.db import connection
from tests.conftest import build_app

ROOT = Path(__file__).resolve().parents[1]
FLASK = Path(sys.executable).parent / "flask"
ROWS = 400  # the command takes long enough that the test sees it midway
KILL_AFTER = 10  # rows the command must have finished before it is killed
COMMAND_SECONDS = 120


def cli_env(config) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMNAR_")}
    env.update(LUMNAR_ENV="development", LUMNAR_DATA_DIR=str(config["DATA_DIR"]),
               LUMNAR_SECRET_KEY=config["SECRET_KEY"], LUMNAR_MASTER_KEYS=config["MASTER_KEYS"],
               PYTHONUNBUFFERED="1")
    return env


def flask_vault(config, *args) -> subprocess.Popen:
    return subprocess.Popen([str(FLASK), "--app", "app", "vault", *args], cwd=ROOT,
                            env=cli_env(config), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def kill_midway(proc: subprocess.Popen, database: str, read_rows, originals: dict) -> set:
    """Kill `proc` (SIGKILL) once at least KILL_AFTER of `originals` (id -> stored bytes) have
    changed; the ids changed when it was dead, checked to be some but not all.
    `read_rows(cursor)` gives the (id, bytes) rows now."""
    watcher = sqlite3.connect(database, timeout=30, isolation_level=None)

    def changed() -> set:
        return {i for i, value in read_rows(watcher) if bytes(value) != originals[i]}

    try:
        while len(changed()) < KILL_AFTER:
            if proc.poll() is not None:
                pytest.fail(f"the command ended (exit {proc.returncode}) before "
                            f"{KILL_AFTER} rows were changed:\n{proc.stdout.read()}")
            threading.Event().wait(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(COMMAND_SECONDS)
        done = changed()  # what the killed command left behind
        assert KILL_AFTER <= len(done) < len(originals), (
            f"the command was not caught midway: {len(done)} of {len(originals)} rows changed")
        return done
    finally:
        watcher.close()
        if proc.poll() is None:  # the test failed while it ran
            proc.kill()
        proc.wait(COMMAND_SECONDS)
        proc.stdout.close()


def run_to_end(config, *args) -> str:
    proc = flask_vault(config, *args)
    output, _ = proc.communicate(timeout=COMMAND_SECONDS)
    assert proc.returncode == 0, output
    return output


def test_rotate_master_killed_midway_and_run_again_leaves_every_credential_readable(app_config):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    config = dict(app_config, MASTER_KEYS=old)
    app = build_app(config)
    secrets = {}
    with app.app_context(), connection():
        for i in range(ROWS):
            ws = Workspace.create(name=f"W{i}").id
            cred = vault.store(ws, "Shop", "Token", "api_token", {"token": f"tok-{i}-{ws}"})
            secrets[cred.id] = {"token": f"tok-{i}-{ws}"}
        originals = {row.id: bytes(row.wrapped_key) for row in WorkspaceKey.select()}
    rotating = dict(config, MASTER_KEYS=f"{new},{old}")

    def wrapped_keys(cursor):
        return cursor.execute("SELECT id, wrapped_key FROM workspace_key").fetchall()

    proc = flask_vault(rotating, "rotate-master")
    done_before_kill = kill_midway(proc, app.config["DATABASE"], wrapped_keys, originals)

    # Killed midway: the rows it re-wrapped open with the new key, the others still with the
    # old one, and with both configured the app starts and every credential opens.
    new_only = Fernet(new.encode())
    with connection():
        rows = {row.id: bytes(row.wrapped_key) for row in WorkspaceKey.select()}
    for key_id in done_before_kill:
        new_only.decrypt(rows[key_id])
    halfway = build_app(rotating, migrate=False)
    with halfway.app_context(), connection():
        for cred_id, secret in secrets.items():
            assert vault.reveal(Credential.get_by_id(cred_id)) == secret

    output = run_to_end(rotating, "rotate-master")
    assert f"re-wrapped {ROWS} workspace keys" in output

    # Run again to the end: the new key alone opens everything, and the rows re-wrapped
    # before the kill were left as they were (not wrapped a second time).
    with connection():
        after = {row.id: bytes(row.wrapped_key) for row in WorkspaceKey.select()}
    assert {k: after[k] for k in done_before_kill} == {k: rows[k] for k in done_before_kill}
    final = build_app(dict(config, MASTER_KEYS=new), migrate=False)
    with final.app_context(), connection():
        for cred_id, secret in secrets.items():
            assert vault.reveal(Credential.get_by_id(cred_id)) == secret
    with pytest.raises(SystemExit):
        build_app(dict(config, MASTER_KEYS=old), migrate=False)


def test_rekey_killed_midway_and_run_again_leaves_every_credential_readable(app_config):
    config = dict(app_config, MASTER_KEYS=Fernet.generate_key().decode())
    app = build_app(config)
    master = Fernet(config["MASTER_KEYS"].encode())
    with app.app_context(), connection():
        ws = Workspace.create(name="Many credentials").id
        other = Workspace.create(name="Bystander").id
        secrets = {}
        for i in range(ROWS):
            cred = vault.store(ws, "Shop", f"Token {i}", "api_token", {"token": f"secret-{i}"})
            secrets[cred.id] = {"token": f"secret-{i}"}
        bystander = vault.store(other, "Shop", "Token", "api_token", {"token": "untouched"})
        old_data_key = master.decrypt(
            bytes(WorkspaceKey.get(WorkspaceKey.workspace == ws).wrapped_key))
        originals = {c.id: bytes(c.payload) for c in
                     Credential.select().where(Credential.workspace == ws)}
        bystander_payload = bytes(bystander.payload)

    def payloads(cursor):
        return cursor.execute("SELECT id, payload FROM credential WHERE workspace_id = ?",
                              (ws,)).fetchall()

    proc = flask_vault(config, "rekey", str(ws))
    done_before_kill = kill_midway(proc, app.config["DATABASE"], payloads, originals)

    # Killed midway: every credential opens, the re-encrypted ones and the others alike.
    halfway = build_app(config, migrate=False)
    with halfway.app_context(), connection():
        for cred_id, secret in secrets.items():
            assert vault.reveal(Credential.get_by_id(cred_id)) == secret
        partial = {c.id: bytes(c.payload) for c in
                   Credential.select().where(Credential.workspace == ws)}

    output = run_to_end(config, "rekey", str(ws))
    # The second run re-encrypted only what the first had not: nothing twice.
    assert f"re-encrypted {ROWS - len(done_before_kill)} credentials of workspace {ws}" in output

    with connection():
        (data_key,) = master.decrypt(
            bytes(WorkspaceKey.get(WorkspaceKey.workspace == ws).wrapped_key)).split()
        final = {c.id: bytes(c.payload) for c in
                 Credential.select().where(Credential.workspace == ws)}
        assert bytes(Credential.get_by_id(bystander.id).payload) == bystander_payload
    assert data_key != old_data_key, "the old data key is gone"
    assert {k: final[k] for k in done_before_kill} == {k: partial[k] for k in done_before_kill}
    # Under the new data key alone, every credential opens to what was stored.
    only_new = Fernet(data_key)
    assert {k: json.loads(only_new.decrypt(v)) for k, v in final.items()} == secrets
    final_app = build_app(config, migrate=False)
    with final_app.app_context(), connection():
        for cred_id, secret in secrets.items():
            assert vault.reveal(Credential.get_by_id(cred_id)) == secret
        assert vault.reveal(Credential.get_by_id(bystander.id)) == {"token": "untouched"}
