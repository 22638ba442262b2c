"""The credential vault: envelope encryption with cryptography's Fernet.

Master keys (newest first) come from LUMNAR_MASTER_KEYS or, for the embedded default, a
0600 file data/master_keys made on first run; they never enter the database. Each workspace
has its own data key, stored wrapped by the master keys. Credentials are encrypted with
their workspace's data key. Rotating the master key re-wraps the data keys only; re-keying
a workspace re-encrypts its credentials under a fresh data key.
"""

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

from app.automations.models import Credential, VaultCheck, WorkspaceKey
from app.db import database
from app.models import utcnow

CHECK_PLAINTEXT = b"lumnar vault check"
KEY_FILE = "master_keys"


class VaultError(RuntimeError):
    pass


def _key_file(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def load_master_keys(config) -> list[bytes]:
    """Newest first. From LUMNAR_MASTER_KEYS (comma-separated) or the key file, made once."""
    raw = config.get("MASTER_KEYS") or ""
    if raw:
        keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
    else:
        path = _key_file(config["DATA_DIR"])
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(Fernet.generate_key().decode() + "\n")
        keys = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
    try:
        [Fernet(k) for k in keys]
    except ValueError:
        raise VaultError("A master key is not a valid Fernet key (32 url-safe base64 bytes).") from None
    if not keys:
        raise VaultError("No master key configured.")
    return keys


def master(config=None) -> MultiFernet:
    config = config or current_app.config
    return MultiFernet([Fernet(k) for k in load_master_keys(config)])


def check_keys(config) -> None:
    """Refuse to start when the configured keys cannot open the stored check value."""
    if not database.table_exists(VaultCheck._meta.table_name):
        return  # not migrated yet
    fernet = master(config)
    row = VaultCheck.select().first()
    if row is None:
        VaultCheck.create(token=fernet.encrypt(CHECK_PLAINTEXT))
        return
    try:
        ok = fernet.decrypt(bytes(row.token)) == CHECK_PLAINTEXT
    except InvalidToken:
        ok = False
    if not ok:
        raise VaultError(
            "The configured master keys cannot open this database's credentials. Set "
            "LUMNAR_MASTER_KEYS (or data/master_keys) to the keys it was encrypted with, newest "
            "first; to move to a new key, add it in front of the old one and run "
            "`flask --app app vault rotate-master`.")


# --- data keys -------------------------------------------------------------------------------


def _data_key(workspace_id: int, create: bool = False) -> Fernet:
    row = WorkspaceKey.get_or_none(WorkspaceKey.workspace == workspace_id)
    if row is None:
        if not create:
            raise VaultError("This workspace has no vault key.")
        key = Fernet.generate_key()
        row = WorkspaceKey.create(workspace=workspace_id, wrapped_key=master().encrypt(key))
        return Fernet(key)
    return Fernet(master().decrypt(bytes(row.wrapped_key)))


def _hint(kind: str, secrets: dict) -> str:
    """Last four characters of a long token, to tell credentials apart. Never for passwords
    or secret maps, where four characters would give too much away."""
    if kind not in ("api_token", "oauth", "webhook_url"):
        return ""
    main = next((str(v) for v in secrets.values() if v), "")
    return main[-4:] if len(main) >= 16 else ""


def store(workspace_id: int, platform: str, label: str, kind: str, secrets: dict,
          credential: Credential | None = None) -> Credential:
    """Encrypt and save (or replace the secrets of) a credential."""
    if kind not in Credential.KINDS:
        raise VaultError("Unknown credential kind.")
    with database.atomic():
        token = _data_key(workspace_id, create=True).encrypt(json.dumps(secrets).encode())
        if credential is None:
            credential = Credential(workspace=workspace_id, created_at=utcnow())
        credential.platform, credential.label, credential.kind = platform, label, kind
        credential.payload, credential.hint, credential.rotated_at = token, _hint(kind, secrets), utcnow()
        credential.save()
    return credential


def reveal(credential: Credential) -> dict:
    """The secrets, for a flow about to use them. Never for a page, a log or an export."""
    data = _data_key(credential.workspace_id).decrypt(bytes(credential.payload))
    Credential.update(last_used_at=utcnow()).where(Credential.id == credential.id).execute()
    return json.loads(data)


def secret_values(workspace_id: int) -> list[str]:
    """Every secret string of the workspace's credentials, for redacting run logs (it does
    not count as a use: last_used_at stays as it was)."""
    creds = list(Credential.select(Credential.payload).where(Credential.workspace == workspace_id))
    if not creds:
        return []
    key = _data_key(workspace_id)
    values, stack = [], [json.loads(key.decrypt(bytes(c.payload))) for c in creds]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            values.append(item)
    return values


def rotate_master() -> int:
    """Re-wrap every data key (and the check value) under the newest master key.
    Safe to interrupt and run again: rows already re-wrapped are simply re-wrapped again."""
    fernet = master()
    done = 0
    for row in WorkspaceKey.select():
        WorkspaceKey.update(wrapped_key=fernet.rotate(bytes(row.wrapped_key)), rotated_at=utcnow()) \
            .where(WorkspaceKey.id == row.id).execute()
        done += 1
    for row in VaultCheck.select():
        VaultCheck.update(token=fernet.rotate(bytes(row.token))).where(VaultCheck.id == row.id).execute()
    return done


def rekey_workspace(workspace_id: int) -> int:
    """A fresh data key for one workspace, its credentials re-encrypted under it, all in one
    transaction: interrupted, nothing changed; run again, it simply does it."""
    with database.atomic():
        old = _data_key(workspace_id)
        new_key = Fernet.generate_key()
        new = Fernet(new_key)
        count = 0
        for cred in Credential.select().where(Credential.workspace == workspace_id):
            Credential.update(payload=new.encrypt(old.decrypt(bytes(cred.payload)))) \
                .where(Credential.id == cred.id).execute()
            count += 1
        WorkspaceKey.update(wrapped_key=master().encrypt(new_key), rotated_at=utcnow()) \
            .where(WorkspaceKey.workspace == workspace_id).execute()
    return count
