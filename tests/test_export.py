"""Access and portability: an owner exports the workspace, any member their own data; the
ZIP is structured, complete and holds no secret; the link needs its owner's login and expires;
expired exports are purged; one export at a time."""

import io
import json
import re
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from app.accounts.models import User
from app.automations import vault
from app.chat.models import Attachment, Message
from app.db import connection, utcnow
from app.mail.models import OutboundEmail
from app.move_database import product_models
from app.privacy.export import registry, service
from app.privacy.export.models import ExportRequest
from tests.chat_fixtures import (  # noqa: F401 (fixtures)
    AGENT_EMAIL,
    OTHER_EMAIL,
    agent_fixture,
    conversation_fixture,
    online_fixture,
    png_bytes,
    reply,
    rival_fixture,
    site_fixture,
    text,
    visitor_fixture,
    ws_fixture,
)
from tests.conftest import old_token

SECRET = "tok_live_Export9Secret7Value3Zq"
LINK = re.compile(r"http://localhost(/dashboard/privacy/export/download/[^\s<\"]+)")


# --- helpers ----------------------------------------------------------------------------------


def ask(client, scope="workspace", htmx=False):
    return client.post_form(f"/dashboard/privacy/export/{scope}", htmx=htmx)


def newest_link(address: str) -> str:
    with connection():
        email = (OutboundEmail.select().where((OutboundEmail.to == address)
                                              & OutboundEmail.subject.contains("export is ready"))
                 .order_by(OutboundEmail.id.desc()).first())
    assert email is not None, f"no export e-mail to {address}"
    return LINK.search(email.text_body).group(1)


def status_of(client, link: str) -> int:
    response = client.get(link)
    response.close()  # a file it streams is closed with it
    return response.status_code


def download(client, link: str) -> zipfile.ZipFile:
    response = client.get(link)
    try:
        assert response.status_code == 200, text(response)
        assert response.headers["Content-Type"] == "application/zip"
        assert "attachment" in response.headers["Content-Disposition"]
        return zipfile.ZipFile(io.BytesIO(response.get_data()))
    finally:
        response.close()


def matches(value, schema: dict, where: str) -> list[str]:
    """The problems of `value` against the subset of JSON Schema the export writes (type,
    properties, required, additionalProperties, items, date-time format)."""
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    allowed = schema.get("type")
    if allowed is not None:
        allowed = allowed if isinstance(allowed, list) else [allowed]
        ok = any((isinstance(value, int) and not isinstance(value, bool)) if t == "integer"
                 else isinstance(value, kinds[t]) for t in allowed)
        if not ok:
            return [f"{where}: {value!r} is not {allowed}"]
    problems = []
    if schema.get("format") == "date-time" and isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value):
            problems.append(f"{where}: {value!r} is not a date-time")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        problems += [f"{where}: {key} missing" for key in schema.get("required", []) if key not in value]
        if schema.get("additionalProperties") is False:
            problems += [f"{where}: {key} not in schema" for key in value if key not in properties]
        for key, item in value.items():
            if key in properties:
                problems += matches(item, properties[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += matches(item, schema["items"], f"{where}[{i}]")
    return problems


def every_byte(archive: zipfile.ZipFile) -> bytes:
    return b"".join(archive.read(name) for name in archive.namelist())


def rows_of(archive, name) -> list[dict]:
    return json.loads(archive.read(name))


@pytest.fixture(name="busy_workspace")
def busy_workspace_fixture(app, ws, conversation, visitor, auth, agent):
    """A workspace with a visitor's message and file, an owner's and an agent's replies, and a
    credential whose secret must never leave the vault."""
    assert visitor.send("Here is my receipt", file=(png_bytes(), "receipt.png", "image/png")).status_code == 200
    assert reply(auth, conversation.id, {"body": "Thanks, owner here"}).status_code < 400
    assert reply(agent["client"], conversation.id, {"body": "Agent Andy answering"}).status_code < 400
    with app.app_context(), connection():
        vault.store(ws, "CRM", "CRM token", "api_token", {"token": SECRET})
    return conversation


# --- the promises -----------------------------------------------------------------------------


def test_export_is_structured_and_machine_readable(app, auth, user, ws, busy_workspace):
    response = ask(auth)
    assert response.status_code == 303
    archive = download(auth, newest_link(user.email))

    names = set(archive.namelist())
    assert {"schema.json", "README.txt", "manifest.json", "messages.json", "conversations.json",
            "credentials.json", "access_log.json", "invoices.json", "requests.json"} <= names
    schema = json.loads(archive.read("schema.json"))
    assert schema["schema_version"] == registry.SCHEMA_VERSION
    json_files = {n for n in names if n.endswith(".json") and n != "schema.json"}
    assert json_files == set(schema["files"])  # every file described, no description dangling
    for name in sorted(json_files):
        assert matches(json.loads(archive.read(name)), schema["files"][name], name) == []

    # Every message and every file of the workspace.
    with connection():
        message_ids = {m.id for m in Message.select(Message.id).where(Message.workspace_id == ws)}
        files = {a.id: bytes(a.data) for a in Attachment.select().where(Attachment.workspace_id == ws)}
        password_hash = User.get_by_id(user.id).password_hash
    assert {m["id"] for m in rows_of(archive, "messages.json")} == message_ids
    exported = {a["id"]: a["file"] for a in rows_of(archive, "attachments.json")}
    assert set(exported) == set(files) and files
    for attachment_id, path in exported.items():
        assert archive.read(path) == files[attachment_id]

    # No secret: neither the credential's value nor the password's hash, anywhere inside.
    inside = every_byte(archive)
    assert SECRET.encode() not in inside and password_hash.encode() not in inside
    (credential,) = rows_of(archive, "credentials.json")
    assert credential["label"] == "CRM token" and credential["masked"].startswith("••••")
    assert "workspace" in archive.read("README.txt").decode()


def test_a_members_personal_export_holds_only_their_own_data(app, agent, user, ws, busy_workspace):
    client = agent["client"]
    assert ask(client, "personal").status_code == 303
    archive = download(client, newest_link(AGENT_EMAIL))
    names = set(archive.namelist())
    assert "workspace.json" not in names and "conversations.json" not in names
    assert "credentials.json" not in names and "billing_account.json" not in names
    messages = rows_of(archive, "messages.json")
    assert [m["body"] for m in messages] == ["Agent Andy answering"]
    assert {a["email"] for a in rows_of(archive, "account.json")} == {AGENT_EMAIL}
    assert {m["user_id"] for m in rows_of(archive, "members.json")} == {agent["user"].id}
    inside = every_byte(archive)
    assert user.email.encode() not in inside  # nothing of the owner's
    assert b"Hello, do you ship to Iceland?" not in inside and b"receipt" not in inside
    schema = json.loads(archive.read("schema.json"))
    for name in schema["files"]:
        assert matches(json.loads(archive.read(name)), schema["files"][name], name) == []


def test_an_agent_cannot_export_the_whole_workspace(app, agent):
    response = ask(agent["client"], "workspace", htmx=True)
    assert response.status_code == 403
    assert "Only an owner" in text(response)
    with connection():
        assert ExportRequest.select().count() == 0


def test_one_export_at_a_time_per_workspace(app, auth, user, ws, agent):
    with connection():  # an export still being prepared by the worker
        running = ExportRequest.create(workspace=ws, user=user.id, scope="workspace",
                                       status=ExportRequest.RUNNING, running_for=ws, kinds_total=4)
    for client, scope in ((auth, "workspace"), (agent["client"], "personal")):
        response = ask(client, scope, htmx=True)
        assert response.status_code == 409
        assert "already being prepared" in text(response)
    with connection():
        assert [e.id for e in ExportRequest.select()] == [running.id]
    # The database itself refuses a second one too, whatever asks.
    from peewee import IntegrityError

    with connection(), pytest.raises(IntegrityError):
        ExportRequest.create(workspace=ws, user=user.id, scope="personal", running_for=ws)


def test_progress_is_shown_live_while_an_export_is_prepared(app, auth, user, ws):
    with connection():
        export = ExportRequest.create(workspace=ws, user=user.id, scope="workspace",
                                      status=ExportRequest.RUNNING, running_for=ws,
                                      kinds_total=4, kinds_done=1, rows_written=1234)
    page = text(auth.get("/dashboard/privacy"))
    assert 'hx-trigger="every 2s"' in page and 'value="25"' in page and "1,234 records" in page
    assert "Export the workspace" not in page  # no second one while it runs
    with connection():
        ExportRequest.update(status=ExportRequest.READY, running_for=None, finished_at=utcnow(),
                             expires_at=utcnow() + timedelta(days=7), size=2048).where(
            ExportRequest.id == export.id).execute()
    fragment = text(auth.get("/dashboard/privacy/export", headers={"HX-Request": "true"}))
    assert fragment.lstrip().startswith("<section") and "every 2s" not in fragment
    assert "is ready" in fragment and "Export the workspace" in fragment


def test_the_link_needs_the_login_of_who_asked(app, auth, user, agent, rival, busy_workspace):
    ask(auth)
    link = newest_link(user.email)
    anonymous = app.test_client()
    response = anonymous.get(link)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert rival["client"].get(link).status_code == 404  # another workspace's owner
    assert agent["client"].get(link).status_code == 404  # a member of the same workspace
    assert download(auth, link).namelist()


def test_the_link_expires_after_seven_days(app, auth, user, ws):
    ask(auth)
    with connection():
        export = ExportRequest.get()
    payload = {"e": export.id, "u": user.id}
    fresh = old_token(app, "export", payload, timedelta(days=6, hours=23))
    assert status_of(auth, f"/dashboard/privacy/export/download/{fresh}") == 200
    stale = old_token(app, "export", payload, timedelta(days=7, minutes=1))
    response = auth.get(f"/dashboard/privacy/export/download/{stale}")
    assert response.status_code == 400 and "expired" in text(response)
    tampered = auth.get(f"/dashboard/privacy/export/download/{fresh[:-3]}xyz")
    assert tampered.status_code == 400


def test_another_workspaces_export_is_a_404(app, auth, user, rival):
    ask(rival["client"])
    with connection():
        theirs = ExportRequest.get(ExportRequest.workspace == rival["ws"])
    # A link naming their export but signed for this person: still nothing.
    forged = old_token(app, "export", {"e": theirs.id, "u": user.id}, timedelta(0))
    assert auth.get(f"/dashboard/privacy/export/download/{forged}").status_code == 404
    assert auth.get(newest_link(OTHER_EMAIL)).status_code == 404


def test_expired_exports_are_purged_file_and_row(app, auth, user):
    ask(auth)
    with app.app_context(), connection():
        export = ExportRequest.get()
        path = service.folder() / export.filename
        assert path.is_file() and export.expires_at - utcnow() > timedelta(days=6, hours=23)
        assert service.purge_expired(utcnow() + timedelta(days=6)) == 0
        assert path.is_file()
        assert service.purge_expired(utcnow() + timedelta(days=7, minutes=1)) == 1
        assert not path.exists() and ExportRequest.select().count() == 0
        assert [p.name for p in Path(service.folder()).iterdir()] == []
    assert auth.get(newest_link(user.email)).status_code == 404


def test_an_export_whose_worker_died_frees_the_workspace(app, auth, user, ws):
    with app.app_context(), connection():
        ExportRequest.create(workspace=ws, user=user.id, scope="workspace", running_for=ws,
                             status=ExportRequest.RUNNING, created_at=utcnow() - timedelta(hours=7))
        service.purge_expired()
        assert ExportRequest.get().status == ExportRequest.FAILED
    assert ask(auth).status_code == 303


def test_every_table_holding_personal_data_is_in_an_export():
    exported = {kind.model for kind in registry.KINDS}
    left_out = set(registry.NOT_EXPORTED)
    assert not exported & left_out, "a table both exported and left out"
    missing = [m.__name__ for m in product_models() if m not in exported | left_out]
    assert missing == [], (f"{missing} are in no export kind: add a Kind to "
                           "app/privacy/export/registry.py (or say in NOT_EXPORTED why not)")
    assert all(reason.strip() for reason in registry.NOT_EXPORTED.values())


def test_a_kinds_rows_are_read_in_batches(app, ws, user, monkeypatch):
    """Memory stays flat: rows come a batch at a time, however many there are."""
    with app.app_context(), connection():
        scope = registry.Scope(workspace_id=ws, user_id=user.id, email=user.email, personal=False)
        kind = next(k for k in registry.KINDS if k.name == "emails")
        for i in range(7):
            OutboundEmail.create(to=user.email, subject=f"n{i}", text_body="", html_body="")
        expected = [e.id for e in OutboundEmail.select().where(OutboundEmail.to == user.email)
                    .order_by(OutboundEmail.id)]
        monkeypatch.setattr(service, "BATCH", 3)
        assert [row.id for row in service._batches(kind.query(scope))] == expected
