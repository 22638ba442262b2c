"""The credential vault: secrets never stored in clear, keys checked at start, rotation safe."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.accounts.models import Workspace
from app.automations import vault
from app.automations.models import Credential, WorkspaceKey
from app.db import connection, database
from tests.conftest import build_app

SECRET = "sk_test_THIS-IS-THE-CUSTOMERS-OWN-TOKEN-1234"


def stored(app, workspace_id, secret=SECRET):
    with app.app_context(), connection():
        return vault.store(workspace_id, "Acme CRM", "CRM token", "api_token", {"token": secret})


@pytest.fixture
def workspace(app):
    with connection():
        return Workspace.create(name="Vault test").id


def test_a_stored_secret_is_nowhere_in_the_database_files(app, workspace):
    stored(app, workspace)
    with connection():
        database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
    files = [Path(app.config["DATABASE"]), Path(app.config["DATABASE"] + "-wal")]
    raw = b"".join(p.read_bytes() for p in files if p.exists())
    assert raw, "the database files were read"
    assert SECRET.encode() not in raw
    assert SECRET[-12:].encode() not in raw


def test_a_stored_secret_reads_back_only_through_the_vault_and_shows_masked(app, workspace):
    credential = stored(app, workspace)
    assert credential.masked == "••••1234"
    with app.app_context(), connection():
        assert vault.reveal(Credential.get_by_id(credential.id)) == {"token": SECRET}
        assert Credential.get_by_id(credential.id).last_used_at is not None


def test_the_app_refuses_to_start_with_a_master_key_that_cannot_open_the_vault(app_config):
    build_app(app_config)  # first start: the key file is made and the check value stored
    build_app(app_config)  # same keys: starts
    wrong = dict(app_config, MASTER_KEYS=Fernet.generate_key().decode())
    with pytest.raises(SystemExit) as refused:
        build_app(wrong, migrate=False)
    assert "cannot open this database's credentials" in str(refused.value)


def test_master_key_rotation_keeps_every_credential_readable(app_config):
    old_key = Fernet.generate_key().decode()
    app = build_app(dict(app_config, MASTER_KEYS=old_key))
    with connection():
        ws = [Workspace.create(name=f"W{i}").id for i in range(3)]
    creds = [stored(app, w, secret=f"{SECRET}-{w}") for w in ws]

    new_key = Fernet.generate_key().decode()
    rotated = build_app(dict(app_config, MASTER_KEYS=f"{new_key},{old_key}"), migrate=False)
    with rotated.app_context(), connection():
        assert vault.rotate_master() == 3
        assert vault.rotate_master() == 3  # running it again is harmless
    # Now the new key alone opens everything; the old key alone no longer starts the app.
    only_new = build_app(dict(app_config, MASTER_KEYS=new_key), migrate=False)
    with only_new.app_context(), connection():
        for w, cred in zip(ws, creds, strict=True):
            assert vault.reveal(Credential.get_by_id(cred.id)) == {"token": f"{SECRET}-{w}"}
    with pytest.raises(SystemExit):
        build_app(dict(app_config, MASTER_KEYS=old_key), migrate=False)


def test_rekeying_a_workspace_reencrypts_its_credentials_and_they_stay_readable(app, workspace):
    cred = stored(app, workspace)
    with app.app_context(), connection():
        before_payload = bytes(Credential.get_by_id(cred.id).payload)
        before_key = bytes(WorkspaceKey.get(WorkspaceKey.workspace == workspace).wrapped_key)
        assert vault.rekey_workspace(workspace) == 1
        after = Credential.get_by_id(cred.id)
        assert bytes(after.payload) != before_payload
        assert bytes(WorkspaceKey.get(WorkspaceKey.workspace == workspace).wrapped_key) != before_key
        assert vault.reveal(after) == {"token": SECRET}


def test_deleting_a_workspace_destroys_its_data_key(app, workspace):
    stored(app, workspace)
    with app.app_context(), connection():
        Workspace.get_by_id(workspace).delete_instance()
        assert WorkspaceKey.select().where(WorkspaceKey.workspace == workspace).count() == 0
        assert Credential.select().where(Credential.workspace == workspace).count() == 0


def test_the_cli_rotates_to_a_fresh_master_key_file(app, workspace):
    cred = stored(app, workspace)
    key_file = Path(app.config["DATA_DIR"]) / vault.KEY_FILE
    before = key_file.read_text().split()
    result = app.test_cli_runner().invoke(args=["vault", "rotate-master", "--new-key"])
    assert result.exit_code == 0, result.output
    after = key_file.read_text().split()
    assert len(after) == len(before) + 1 and after[1:] == before
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    with app.app_context(), connection():
        assert vault.reveal(Credential.get_by_id(cred.id)) == {"token": SECRET}
