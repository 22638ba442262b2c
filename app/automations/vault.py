"""The credential vault: envelope encryption with cryptography's Fernet.

Master keys (newest first) come from LUMNAR_MASTER_KEYS or, for the embedded default, a
0600 file data/master_keys, made only for a database whose vault is still empty (for one that
holds keys, a new key would open nothing); they never enter the database. Each workspace
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
from app.db import database, utcnow

CHECK_PLAINTEXT = b"lumnar vault check"
KEY_FILE = "master_keys"


class VaultError(RuntimeError):
    pass


def _key_file(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def _vault_in_use() -> bool:
    """Whether this database holds anything the master keys protect (a wrapped workspace key
    or the check value)."""
    if not database.table_exists(VaultCheck._meta.table_name):
        return False
    return VaultCheck.select().exists() or WorkspaceKey.select().exists()


def _missing_keys_message(path: Path) -> str:
    return (
        f"the master key file {path} is missing and LUMNAR_MASTER_KEYS is not set, but this "
        "database already holds credentials protected by master keys. A new key could not open "
        "them, so none was made and nothing was written. Restore the key file from where you "
        "keep its copy (to that path, mode 0600), or set LUMNAR_MASTER_KEYS to those keys, "
        "newest first; then start again.")


def _write_key_file(path: Path, text: str, replace: bool) -> bool:
    """Write the key file whole or not at all: a reader (another process starting, a later
    start after a crash) never finds it empty or half-written. With replace=False it is made
    only if absent (False when another process made it first)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if the file exists: two starts cannot make two keys
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: made in place, still exclusively
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def load_master_keys(config) -> list[bytes]:
    """Newest first. From LUMNAR_MASTER_KEYS (comma-separated) or the key file, which is made
    only for a database that has no vault yet: for one that has, a new key would open nothing."""
    raw = config.get("MASTER_KEYS") or ""
    if raw:
        keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
    else:
        path = _key_file(config["DATA_DIR"])
        if not path.exists():
            if _vault_in_use():
                raise VaultError(_missing_keys_message(path))
            _write_key_file(path, Fernet.generate_key().decode() + "\n", replace=False)
        keys = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
    try:
        [Fernet(k) for k in keys]
    except ValueError:
        raise VaultError("A master key is not a valid Fernet key (32 url-safe base64 bytes).") from None
    if not keys:
        raise VaultError("No master key configured.")
    return keys


def add_master_key(data_dir: Path) -> None:
    """Put a new master key in front of the key file's keys (the file is replaced whole, so a
    crash leaves either the old keys or all of them, never an empty file)."""
    path = _key_file(data_dir)
    _write_key_file(path, Fernet.generate_key().decode() + "\n" + path.read_text(), replace=True)


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
        # No check value yet, but maybe workspace keys already (stored before the first
        # restart): the check value is only made with keys that open them.
        first = WorkspaceKey.select().first()
        try:
            ok = first is None or bool(fernet.decrypt(bytes(first.wrapped_key)))
        except InvalidToken:
            ok = False
        if ok:
            VaultCheck.create(token=fernet.encrypt(CHECK_PLAINTEXT))
            return
    else:
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
#
# A workspace's wrapped value holds its data keys, newest first, one a line. There is one,
# except while a rekey is under way: then the new key stands in front of the old one, so that
# every credential opens whichever of the two it is encrypted with.


def _unwrap(row: WorkspaceKey, fernet: MultiFernet | None = None) -> list[bytes]:
    plain = (fernet or master()).decrypt(bytes(row.wrapped_key))
    return [k for k in plain.split(b"\n") if k]


def _data_key(workspace_id: int, create: bool = False) -> MultiFernet:
    row = WorkspaceKey.get_or_none(WorkspaceKey.workspace == workspace_id)
    if row is None:
        if not create:
            raise VaultError("This workspace has no vault key.")
        key = Fernet.generate_key()
        row = WorkspaceKey.create(workspace=workspace_id, wrapped_key=master().encrypt(key))
        return MultiFernet([Fernet(key)])
    return MultiFernet([Fernet(k) for k in _unwrap(row)])


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
    """Re-wrap every data key (and the check value) under the newest master key; how many
    workspace keys are under it now.

    One short commit per workspace, never one long transaction holding the database's write
    lock. Safe to interrupt and run again: until the end every row opens with one of the
    configured keys, and a row already under the newest key is left as it is."""
    keys = load_master_keys(current_app.config)
    fernet, newest = MultiFernet([Fernet(k) for k in keys]), Fernet(keys[0])
    ids = [row.id for row in WorkspaceKey.select(WorkspaceKey.id).order_by(WorkspaceKey.id)]
    done = 0
    for key_id in ids:
        with database.atomic():
            row = WorkspaceKey.get_or_none(WorkspaceKey.id == key_id)
            if row is None:
                continue  # its workspace was deleted meanwhile
            done += 1
            if _opens(newest, row.wrapped_key):
                continue
            WorkspaceKey.update(wrapped_key=fernet.rotate(bytes(row.wrapped_key)),
                                rotated_at=utcnow()).where(WorkspaceKey.id == key_id).execute()
    with database.atomic():
        for row in VaultCheck.select():
            VaultCheck.update(token=fernet.rotate(bytes(row.token))).where(VaultCheck.id == row.id).execute()
    return done


def _opens(fernet: Fernet, token) -> bool:
    try:
        fernet.decrypt(bytes(token))
    except InvalidToken:
        return False
    return True


def rekey_workspace(workspace_id: int) -> int:
    """A fresh data key for one workspace, its credentials re-encrypted under it; how many
    this call re-encrypted.

    In steps that each commit on their own, so that it is safe to kill at any moment and run
    again, and never holds the write lock for long:
    1. the new key is stored in front of the old one (see above): from then on every
       credential opens, whichever key it is under, and new ones are saved under the new key;
    2. each credential not yet under the new key is re-encrypted, one commit each; one that
       is (an earlier run got to it) is left alone, so nothing is encrypted twice;
    3. in one transaction, every credential is checked to open with the new key alone (any
       that does not is re-encrypted there), and only then is the old key dropped.
    A run that finds a rekey under way (two keys) carries on with its new key."""
    fernet = master()
    with database.atomic():
        row = WorkspaceKey.get_or_none(WorkspaceKey.workspace == workspace_id)
        if row is None:
            raise VaultError("This workspace has no vault key.")
        keys = _unwrap(row, fernet)
        if len(keys) == 1:
            keys = [Fernet.generate_key(), keys[0]]
            WorkspaceKey.update(wrapped_key=fernet.encrypt(b"\n".join(keys)), rotated_at=utcnow()) \
                .where(WorkspaceKey.id == row.id).execute()
    new = Fernet(keys[0])
    both = MultiFernet([Fernet(k) for k in keys])
    count = 0
    ids = [c.id for c in Credential.select(Credential.id).where(Credential.workspace == workspace_id)
           .order_by(Credential.id)]
    for cred_id in ids:
        with database.atomic():
            count += _reencrypt(cred_id, new, both)
    with database.atomic():
        row = WorkspaceKey.get_or_none(WorkspaceKey.workspace == workspace_id)
        if row is None or _unwrap(row, fernet)[0] != keys[0]:
            raise VaultError("The workspace was deleted or re-keyed by someone else meanwhile; "
                             "run this again.")
        for cred_id in [c.id for c in Credential.select(Credential.id)
                        .where(Credential.workspace == workspace_id)]:
            count += _reencrypt(cred_id, new, both)
        WorkspaceKey.update(wrapped_key=fernet.encrypt(keys[0]), rotated_at=utcnow()) \
            .where(WorkspaceKey.workspace == workspace_id).execute()
    return count


def _reencrypt(cred_id: int, new: Fernet, both: MultiFernet) -> int:
    """Put one credential under `new` unless it is already (or is gone): 1 if it was re-encrypted."""
    cred = Credential.select(Credential.id, Credential.payload).where(Credential.id == cred_id).first()
    if cred is None or _opens(new, cred.payload):
        return 0
    Credential.update(payload=both.rotate(bytes(cred.payload))).where(Credential.id == cred_id).execute()
    return 1
