"""Exports as plain functions: ask for one, build its ZIP (streamed, a batch of rows at a
time), hand it over through a signed link, and purge it when it expires."""

import json
import logging
import os
import secrets
import zipfile
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path

from flask import abort, current_app, has_request_context, url_for
from peewee import IntegrityError

from app import background
from app.accounts import alerts
from app.accounts.models import Membership, User, Workspace
from app.accounts.service import make_token, read_token
from app.chat.models import Attachment
from app.db import database, utcnow
from app.errors import RuleError
from app.privacy.export import registry
from app.privacy.export.models import ExportRequest

log = logging.getLogger(__name__)

LIFETIME = timedelta(days=7)
BATCH = 500  # rows read and written at a time: memory stays flat however large the data
FILE_BATCH = 20  # attachments read at a time (each up to the upload limit)
STALLED = timedelta(hours=6)  # an export still "running" after this long lost its worker
TOKEN_PURPOSE = "export"
BUSY = ("An export of this workspace is already being prepared. Wait until it is ready (it "
        "takes a few minutes at most), then ask again.")


class ExportRefused(RuleError):
    pass


def _for_links():
    """Where links can be built (url_for, here and in the alert e-mail): the worker serves no
    request, so it gets a bare one; the links themselves start with BASE_URL."""
    return nullcontext() if has_request_context() else current_app.test_request_context("/")


def folder() -> Path:
    path = Path(current_app.config["DATA_DIR"]) / "exports"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# --- asking -----------------------------------------------------------------------------------


def request_export(user: User, membership: Membership | None, scope: str) -> ExportRequest:
    """Queue an export: the workspace's (owners only) or the person's own data (any member).
    One export at a time per workspace: a second one is refused (409) while one runs."""
    if membership is None:
        raise ExportRefused("Join or create a workspace first.", status=404)
    if scope == ExportRequest.WORKSPACE and not membership.is_owner:
        raise ExportRefused("Only an owner can export the whole workspace. You can export your "
                            "own data.", status=403)
    if scope not in (ExportRequest.WORKSPACE, ExportRequest.PERSONAL):
        raise ExportRefused("Choose what to export.", status=400)
    workspace_id = membership.workspace_id
    try:
        with database.atomic():
            if ExportRequest.select().where(ExportRequest.running_for == workspace_id).exists():
                raise ExportRefused(BUSY, status=409)
            export = ExportRequest.create(workspace=workspace_id, user=user.id, scope=scope,
                                          running_for=workspace_id,
                                          kinds_total=len(registry.kinds_for(_scope_of(scope, workspace_id, user))))
    except IntegrityError:  # another request won the race for the unique column
        raise ExportRefused(BUSY, status=409) from None
    background.enqueue("privacy.export", export.id)
    return export


def _scope_of(scope: str, workspace_id: int, user: User) -> registry.Scope:
    return registry.Scope(workspace_id=workspace_id, user_id=user.id, email=user.email,
                          personal=scope == ExportRequest.PERSONAL)


def shown_to(user: User, membership: Membership | None) -> ExportRequest | None:
    """The export the section shows: one running in the workspace (whoever asked), else this
    person's latest that has not expired."""
    if membership is None:
        return None
    running = ExportRequest.get_or_none(ExportRequest.running_for == membership.workspace_id)
    if running is not None:
        return running
    return (ExportRequest.select()
            .where((ExportRequest.workspace == membership.workspace_id)
                   & (ExportRequest.user == user.id)
                   & ((ExportRequest.expires_at.is_null()) | (ExportRequest.expires_at > utcnow())))
            .order_by(ExportRequest.id.desc()).first())


# --- building ---------------------------------------------------------------------------------


def build(export_id: int) -> None:
    """Write the export's ZIP (the worker's task), then e-mail its link to who asked."""
    export = ExportRequest.get_or_none(ExportRequest.id == export_id)
    if export is None or export.status != ExportRequest.QUEUED:
        return  # purged, or already taken by another worker
    claimed = (ExportRequest.update(status=ExportRequest.RUNNING)
               .where((ExportRequest.id == export_id) & (ExportRequest.status == ExportRequest.QUEUED))
               .execute())
    if not claimed:
        return
    user = User.get_by_id(export.user_id)
    scope = _scope_of(export.scope, export.workspace_id, user)
    name = f"{secrets.token_hex(16)}.zip"
    partial = folder() / (name + ".part")
    try:
        counts = _write_zip(partial, export, scope)
        os.replace(partial, folder() / name)
    except Exception:
        log.exception("export %s failed", export_id)
        partial.unlink(missing_ok=True)
        ExportRequest.update(status=ExportRequest.FAILED, running_for=None, finished_at=utcnow(),
                             expires_at=utcnow() + LIFETIME,
                             error="The export could not be finished.").where(
            ExportRequest.id == export_id).execute()
        with _for_links():
            alerts.send([user.email], "Your Lumnar data export could not be finished",
                        "The data export you asked for could not be finished. Nothing was sent "
                        "anywhere; ask for a new export from the Privacy & data page, and write "
                        "to us if it fails again.", advice="If you did not ask for an export, "
                        "change your password from your settings and write to us.")
        return
    now = utcnow()
    ExportRequest.update(status=ExportRequest.READY, running_for=None, filename=name,
                         size=(folder() / name).stat().st_size, finished_at=now,
                         expires_at=now + LIFETIME, rows_written=sum(counts.values())).where(
        ExportRequest.id == export_id).execute()
    with _for_links():
        _tell_ready(ExportRequest.get_by_id(export_id), user)


def _write_zip(path: Path, export: ExportRequest, scope: registry.Scope) -> dict:
    kinds = registry.kinds_for(scope)
    counts, written = {}, 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for done, kind in enumerate(kinds, start=1):
            counts[f"{kind.name}.json"] = rows = _write_kind(archive, kind, scope)
            if kind.files:
                _write_files(archive, kind, scope)
            written += rows
            ExportRequest.update(kinds_done=done, rows_written=written).where(
                ExportRequest.id == export.id).execute()
        manifest = {"schema_version": registry.SCHEMA_VERSION, "scope": export.scope,
                    "workspace_id": export.workspace_id, "user_id": export.user_id,
                    "created_at": registry.plain(utcnow()), "files": counts}
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        archive.writestr("schema.json", json.dumps(registry.schema(scope), indent=2,
                                                   ensure_ascii=False))
        archive.writestr("README.txt", _readme(export, scope, kinds, counts))
    return counts


def _batches(query):
    """The query's rows, BATCH at a time by primary key: each batch is its own short read, so
    no read outlives a batch and memory holds one batch at most."""
    key = query.model._meta.primary_key
    last = None
    while True:
        batch = query.order_by(key).limit(BATCH)
        if last is not None:
            batch = batch.where(key > last)
        seen = 0
        for row in batch.iterator():
            seen += 1
            last = row.__data__[key.name]
            yield row
        if seen < BATCH:
            return


def _write_kind(archive: zipfile.ZipFile, kind: registry.Kind, scope: registry.Scope) -> int:
    rows = 0
    with archive.open(f"{kind.name}.json", "w", force_zip64=True) as out:
        out.write(b"[")
        for row in _batches(kind.query(scope)):
            out.write((b",\n" if rows else b"\n") + json.dumps(
                kind.to_json(row), ensure_ascii=False).encode())
            rows += 1
        out.write(b"\n]\n" if rows else b"]\n")
    return rows


def _write_files(archive: zipfile.ZipFile, kind: registry.Kind, scope: registry.Scope) -> None:
    ids = kind.query(scope).select(Attachment.id)
    last = 0
    while True:
        batch = list(Attachment.select().where(Attachment.id.in_(
            ids.where(Attachment.id > last).order_by(Attachment.id).limit(FILE_BATCH)))
            .order_by(Attachment.id))
        for attachment in batch:
            with archive.open(registry.attachment_path(attachment), "w", force_zip64=True) as out:
                out.write(bytes(attachment.data))
            last = attachment.id
        if len(batch) < FILE_BATCH:
            return


def _readme(export, scope, kinds, counts) -> str:
    whose = ("your own data in Lumnar" if scope.personal
             else "the data of the workspace, and your own account")
    lines = [
        "Lumnar data export",
        "==================",
        "",
        f"This archive holds {whose}, as of {registry.plain(utcnow())}.",
        "",
        "Each .json file is a JSON array of objects, one object per record, in UTF-8.",
        "schema.json describes every file as JSON Schema (draft 2020-12); its schema_version",
        f"is {registry.SCHEMA_VERSION} and changes whenever a file's shape changes.",
        "Times are UTC (ISO 8601). A field ending in _id points to the record with that id.",
        "manifest.json says whose export this is and how many records each file holds.",
        "",
        "Files:",
    ]
    for kind in kinds:
        lines.append(f"- {kind.name}.json ({counts[kind.name + '.json']} records): {kind.description}")
        if kind.files:
            lines.append("- attachments/: the files themselves, named <id>-<original name>.")
    lines += ["", "Secrets (passwords, credentials' values, webhook addresses) are never in an",
              "export: credentials appear by label, masked.", ""]
    return "\n".join(lines)


def _tell_ready(export: ExportRequest, user: User) -> None:
    link = download_link(export)
    workspace = Workspace.get_by_id(export.workspace_id)
    what = (f"The export of the workspace “{workspace.name}” you asked for is ready."
            if export.scope == ExportRequest.WORKSPACE else
            "The export of your own data in Lumnar you asked for is ready.")
    alerts.send([user.email], "Your Lumnar data export is ready",
                f"{what} Download it within 7 days, signed in to Lumnar as {user.email}, from "
                f"this link (it expires on {export.expires_at:%d %B %Y}):",
                lines=[link],
                advice="If you did not ask for this export, do not open the link: log out "
                       "everywhere and change your password from your settings, then write to us.")


# --- the link ---------------------------------------------------------------------------------


def download_link(export: ExportRequest) -> str:
    token = make_token(TOKEN_PURPOSE, {"e": export.id, "u": export.user_id})
    return current_app.config["BASE_URL"] + url_for("export.export_download", token=token)


def file_for(token: str, user: User) -> tuple[Path, str]:
    """The file a link gives to this signed-in person, and its download name. An expired or
    broken link says so (BadLink); another person's link, or a purged export, is a 404."""
    payload = read_token(TOKEN_PURPOSE, token, LIFETIME)
    if not isinstance(payload, dict) or payload.get("u") != user.id:
        abort(404)
    export = ExportRequest.get_or_none((ExportRequest.id == payload.get("e"))
                                       & (ExportRequest.user == user.id)
                                       & (ExportRequest.status == ExportRequest.READY))
    if export is None or export.expires_at <= utcnow():
        abort(404)
    path = folder() / export.filename
    if not path.is_file():
        abort(404)
    kind = "workspace" if export.scope == ExportRequest.WORKSPACE else "personal"
    return path, f"lumnar-{kind}-export-{export.finished_at:%Y-%m-%d}.zip"


# --- purging ----------------------------------------------------------------------------------


def purge_expired(now=None) -> int:
    """Remove expired exports, file and row, a few hundred at a time; an export whose worker
    died long ago is marked failed so that the workspace may export again. Returns rows
    removed."""
    now = now or utcnow()
    ExportRequest.update(status=ExportRequest.FAILED, running_for=None, finished_at=now,
                         expires_at=now + LIFETIME, error="The export was interrupted.").where(
        ExportRequest.status.in_(ExportRequest.ACTIVE) & (ExportRequest.created_at < now - STALLED)
    ).execute()
    removed = 0
    while True:
        batch = list(ExportRequest.select(ExportRequest.id, ExportRequest.filename)
                     .where(ExportRequest.expires_at <= now).order_by(ExportRequest.id).limit(300))
        for export in batch:
            if export.filename:
                (folder() / export.filename).unlink(missing_ok=True)
        if batch:
            removed += ExportRequest.delete().where(
                ExportRequest.id.in_([e.id for e in batch])).execute()
        if len(batch) < 300:
            return removed

