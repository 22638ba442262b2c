"""Operations: the health check, schema migrations and the command-line tools."""

import re
from pathlib import Path

import pytest

from app import migrations
from app.accounts import service
from app.accounts.models import Membership, User
from app.db import connection, database
from tests.conftest import Client, build_app, log_in


def test_healthz_reports_database_and_queue_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": True, "queue": True}


def test_healthz_is_503_when_the_database_path_is_a_directory(app_config, tmp_path):
    directory = tmp_path / "not-a-file"
    directory.mkdir()
    app = build_app({**app_config, "DATABASE": str(directory)}, migrate=False)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "failing", "database": False, "queue": True}


def test_healthz_is_503_when_the_database_file_is_corrupted(app, client):
    assert client.get("/healthz").status_code == 200
    path = Path(app.config["DATABASE"])
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database " * 200)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] is False
    # Once the file is good again, so is the check: nothing stays stuck.
    path.unlink()
    with app.app_context(), connection():
        migrations.run()
    assert client.get("/healthz").status_code == 200


# --- migrations and CLI --------------------------------------------------------------------


@pytest.fixture
def bare_app(app_config):
    """An app on a database no migration has touched yet."""
    return build_app(app_config, migrate=False)


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_migrate_command_applies_every_step_once_and_is_idempotent(bare_app):
    names = ", ".join(f"{v:04d}_{name}" for v, name, _ in migrations.STEPS)
    first = cli(bare_app, "migrate")
    assert first.exit_code == 0, first.output
    assert first.output.strip() == f"migrations applied: {names}"
    with connection():
        tables = set(database.get_tables())
        versions = [r.version for r in migrations.SchemaVersion.select()]
    assert {"user", "workspace", "membership", "invitation", "outbound_email",
            "login_failure", "schema_version"} <= tables
    assert versions == [v for v, _, _ in migrations.STEPS]

    second = cli(bare_app, "migrate")
    assert second.exit_code == 0
    assert second.output.strip() == "migrations applied: none pending"
    with connection():
        assert [r.version for r in migrations.SchemaVersion.select()] == versions


def test_migrated_database_serves_signups(bare_app):
    cli(bare_app, "migrate")
    client = Client(bare_app.test_client())
    response = client.post_form("/signup", {"name": "New", "email": "new@example.com",
                                            "password": "a long enough passphrase"})
    assert response.status_code == 200


def is_staff(email="owner@example.com") -> bool:
    with connection():
        return User.by_email(email).is_staff


def test_grant_staff_command_sets_and_revokes_staff_rights(app, user):
    assert not is_staff()
    granted = cli(app, "grant-staff", "Owner@Example.com")
    assert granted.exit_code == 0
    assert granted.output.strip() == "owner@example.com: is_staff=True"
    assert is_staff()
    revoked = cli(app, "grant-staff", "owner@example.com", "--revoke")
    assert revoked.exit_code == 0
    assert not is_staff()


def test_grant_staff_command_fails_for_an_unknown_email(app, user):
    result = cli(app, "grant-staff", "nobody@example.com")
    assert result.exit_code == 1
    assert "no user with e-mail nobody@example.com" in result.output
    assert not is_staff()


def test_demo_command_creates_a_working_demo_account_on_an_empty_database(app):
    result = cli(app, "demo")
    assert result.exit_code == 0
    match = re.fullmatch(r"demo login: (\S+) / (\S+)", result.output.strip())
    assert match and match.group(1) == service.DEMO_EMAIL
    with connection():
        demo = User.by_email(service.DEMO_EMAIL)
        assert demo.is_verified
        assert [(m.workspace.name, m.role) for m in Membership.of(demo)] == [("Demo Shop", "owner")]
    agent = Client(app.test_client())
    log_in(agent, service.DEMO_EMAIL, match.group(2))
    # The demo inbox starts with one example conversation, unread, with the team's answer.
    inbox = agent.get("/dashboard/inbox").get_data(as_text=True)
    assert "Perfect, thank you!" in inbox and 'class="badge">1<' in inbox
    with connection():
        from app.chat.models import Conversation, Message

        [conversation] = Conversation.select()
        assert [m.sender for m in Message.select().where(Message.conversation == conversation)
                .order_by(Message.id)] == ["visitor", "agent", "visitor"]


def test_demo_command_creates_nothing_when_users_exist(app, user):
    result = cli(app, "demo")
    assert result.exit_code == 0
    assert "already has users" in result.output
    with connection():
        assert User.select().count() == 1
        assert User.by_email(service.DEMO_EMAIL) is None


def test_demo_command_creates_once_and_prints_the_demo_login_on_every_start(app):
    first = cli(app, "demo")
    again = cli(app, "demo")
    assert again.output == first.output  # `make run` shows the login each time: it is a demo
    with connection():
        assert User.select().count() == 1
    kept = app.config["DATA_DIR"] / "demo-login"
    assert kept.stat().st_mode & 0o077 == 0  # readable by its owner only


def test_outside_development_the_demo_login_is_printed_once_and_not_kept(app, monkeypatch):
    monkeypatch.setitem(app.config, "ENV_NAME", "production")
    assert "demo login:" in cli(app, "demo").output
    assert "already has users" in cli(app, "demo").output
    assert not (app.config["DATA_DIR"] / "demo-login").exists()

