"""A lost master key file is never replaced by a useless new one: a database whose vault holds
keys refuses to start without them and writes nothing; only an empty database gets a key file."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.accounts.models import Workspace
from app.automations import vault
from app.automations.models import Credential, VaultCheck, WorkspaceKey
from app.db import connection
from tests.conftest import build_app, db_state

SECRET = "sk_live_THE-TOKEN-THE-KEY-FILE-PROTECTS-5678"


def key_file(config) -> Path:
    return Path(config["DATA_DIR"]) / vault.KEY_FILE


def store_credential(app) -> int:
    with app.app_context(), connection():
        ws = Workspace.create(name="Key file test").id
        return vault.store(ws, "Acme CRM", "CRM token", "api_token", {"token": SECRET}).id


@pytest.mark.parametrize("restarted", [True, False],
                         ids=["with the check value", "before the first restart"])
def test_a_database_with_a_vault_refuses_to_start_without_its_key_file_and_writes_nothing(
        app_config, restarted):
    app = build_app(app_config)
    cred = store_credential(app)
    if restarted:
        build_app(app_config, migrate=False)  # a restart stores the check value
    keys = key_file(app_config).read_bytes()
    key_file(app_config).unlink()
    before = db_state(VaultCheck, WorkspaceKey, Credential)

    with pytest.raises(SystemExit) as refused:
        build_app(app_config, migrate=False)

    message = str(refused.value)
    assert str(key_file(app_config)) in message and "missing" in message
    assert "Restore the key file" in message and "LUMNAR_MASTER_KEYS" in message
    assert not key_file(app_config).exists(), "no new key file was written"
    assert sorted(p.name for p in key_file(app_config).parent.iterdir()
                  if "master_keys" in p.name) == []
    assert db_state(VaultCheck, WorkspaceKey, Credential) == before

    # Once the operator puts the file back, the app starts and every credential opens.
    key_file(app_config).write_bytes(keys)
    key_file(app_config).chmod(0o600)
    restored = build_app(app_config, migrate=False)
    with restored.app_context(), connection():
        assert vault.reveal(Credential.get_by_id(cred)) == {"token": SECRET}


def test_with_keys_in_the_environment_a_missing_key_file_is_not_needed_nor_made(app_config):
    config = dict(app_config, MASTER_KEYS=Fernet.generate_key().decode())
    app = build_app(config)
    cred = store_credential(app)
    restarted = build_app(config, migrate=False)
    assert not key_file(config).exists()
    with restarted.app_context(), connection():
        assert vault.reveal(Credential.get_by_id(cred)) == {"token": SECRET}


def test_an_empty_database_gets_one_generated_key_file(app_config):
    build_app(app_config)  # migrates an empty database
    build_app(app_config, migrate=False)  # its first start with tables: key file and check value
    path = key_file(app_config)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    (key,) = path.read_text().split()
    Fernet(key.encode())  # a valid key
    with connection():
        assert VaultCheck.select().count() == 1
    build_app(app_config, migrate=False)
    assert path.read_text().split() == [key], "a later start keeps the same key"
    assert [p.name for p in path.parent.iterdir() if "master_keys" in p.name] == ["master_keys"]


def test_the_check_value_is_not_made_with_keys_that_cannot_open_the_stored_ones(app_config):
    """Credentials stored before the first restart, then a wrong key configured: the start is
    refused instead of recording the wrong key as the right one."""
    app = build_app(dict(app_config, MASTER_KEYS=Fernet.generate_key().decode()))
    store_credential(app)
    wrong = dict(app_config, MASTER_KEYS=Fernet.generate_key().decode())
    with pytest.raises(SystemExit) as refused:
        build_app(wrong, migrate=False)
    assert "cannot open this database's credentials" in str(refused.value)
    with connection():
        assert VaultCheck.select().count() == 0
