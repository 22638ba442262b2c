"""Safe by default: the app runs as production unless told otherwise, production refuses the
settings that only suit a laptop, and the development outbox (every workspace's sign-in,
reset and invitation links) is a staff page that exists in development only."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from app import config
from app.accounts.models import Membership, User
from app.db import connection
from app.mail.models import OutboundEmail
from app.staff.models import AuditEntry
from tests.conftest import Client, build_app, log_in, make_user, staff_client

ROOT = Path(__file__).resolve().parent.parent
SUBJECT = "Confirm your e-mail address for Lumnar"


@pytest.fixture
def clean_env(monkeypatch):
    """No LUMNAR_* variable set, as on a server where the operator forgot them all."""
    for name in [k for k in os.environ if k.startswith("LUMNAR_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def outbox_app(app_config, **overrides):
    """The app with no mail server (mail waits in the outbox) and one e-mail in it."""
    app = build_app({**app_config, "SMTP_URL": "", **overrides})
    Client(app.test_client()).post_form(
        "/signup", {"name": "Sam Signup", "email": "sam@example.com",
                    "password": "correct horse battery"})
    with connection():
        assert [e.subject for e in OutboundEmail.select()] == [SUBJECT]
        token_link = re.search(r"https?://[^/\s]+(/\S+)", OutboundEmail.get().text_body).group(1)
    app.token_link = token_link
    return app


def shows_no_email(response, app) -> bool:
    html = response.get_data(as_text=True)
    return SUBJECT not in html and app.token_link not in html and "sam@example.com" not in html


# --- the outbox page -------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["development", "production"])
def test_anonymous_visitors_never_read_the_outbox(app_config, env):
    app = outbox_app(app_config, ENV_NAME=env)
    client = Client(app.test_client())
    page = client.get("/dev/outbox")
    htmx = client.get("/dev/outbox", headers={"HX-Request": "true"})
    assert shows_no_email(page, app) and shows_no_email(htmx, app)
    if env == "development":
        # Sent to log in (and back here afterwards), as for any page that needs an account.
        assert page.status_code == 302
        assert page.headers["Location"] == "/login?next=/dev/outbox"
        assert htmx.status_code == 401
    else:
        assert page.status_code == htmx.status_code == 404


def test_a_signed_in_member_who_is_not_staff_cannot_read_the_outbox(app_config):
    app = outbox_app(app_config)
    make_user(app)
    client = Client(app.test_client())
    log_in(client)
    page = client.get("/dev/outbox")
    assert page.status_code == 404
    assert shows_no_email(page, app)


def test_staff_read_the_outbox_in_development_and_it_goes_to_the_access_log(app_config):
    app = outbox_app(app_config)
    page = staff_client(app).get("/dev/outbox")
    assert page.status_code == 200
    assert SUBJECT in page.get_data(as_text=True)
    with connection():
        sams_workspace = Membership.get(Membership.user == User.by_email("sam@example.com")).workspace_id
        entries = [(e.workspace_id, e.staff_email, e.action) for e in AuditEntry.select()]
    assert (sams_workspace, "staff@lumnar.example",
            "read its e-mails in the development outbox") in entries


def test_the_demo_account_is_staff_so_the_demo_can_read_the_outbox(app):
    from app.accounts import service

    with app.app_context(), connection():
        email, password = service.create_demo_account()
        assert User.by_email(email).is_staff
    client = Client(app.test_client())
    log_in(client, email, password)
    assert client.get("/dev/outbox").status_code == 200


def test_a_demo_account_made_on_a_production_database_is_not_staff(app_config):
    from app.accounts import service

    app = build_app({**app_config, "ENV_NAME": "production"})
    with app.app_context(), connection():
        email, _ = service.create_demo_account()
        assert not User.by_email(email).is_staff


def test_production_with_the_default_environment_has_no_outbox(app_config, clean_env):
    # Only what a test must give (its own folder, a fast hash, no real SMTP); LUMNAR_ENV and
    # LUMNAR_BASE_URL are left to their defaults.
    overrides = {k: v for k, v in app_config.items() if k not in ("ENV_NAME", "BASE_URL")}
    app = outbox_app(overrides)
    assert app.config["ENV_NAME"] == "production" and not app.config["DEV_OUTBOX"]
    # Not even staff: the page does not exist.
    page = staff_client(app).get("/dev/outbox")
    assert page.status_code == 404 and shows_no_email(page, app)


# --- defaults and the production refusals ----------------------------------------------------


def test_the_default_environment_is_production(clean_env, tmp_path):
    cfg = config.load({"DATA_DIR": tmp_path})
    assert cfg["ENV_NAME"] == "production"
    assert cfg["DEV_OUTBOX"] is False
    assert config.ENV_VARS["LUMNAR_ENV"][0] == "production"
    assert config.production_problems(cfg) == []


def refusal(app_config) -> str:
    with pytest.raises(SystemExit) as stopped:
        build_app(app_config, migrate=False)
    return str(stopped.value)


@pytest.mark.parametrize("variable, value, named", [
    ("LUMNAR_BASE_URL", "http://chat.example.com", "LUMNAR_BASE_URL=http://chat.example.com"),
    ("LUMNAR_BASE_URL", "http://203.0.113.7:5000", "LUMNAR_BASE_URL=http://203.0.113.7:5000"),
    ("LUMNAR_BASE_URL", "http://10.0.0.5", "LUMNAR_BASE_URL=http://10.0.0.5"),
    # A name that merely starts like a loopback one is somebody else's host.
    ("LUMNAR_BASE_URL", "http://localhost.example.com", "LUMNAR_BASE_URL=http://localhost."),
    ("LUMNAR_BASE_URL", "http://127.0.0.1.example.com", "LUMNAR_BASE_URL=http://127.0.0.1."),
    ("LUMNAR_BASE_URL", "chat.example.com", "LUMNAR_BASE_URL=chat.example.com"),
    ("LUMNAR_AUTOMATIONS_ALLOW_PRIVATE", "1", "LUMNAR_AUTOMATIONS_ALLOW_PRIVATE is on"),
    # Anything but an explicit "development" runs as production, and a typo is refused.
    ("LUMNAR_ENV", "prod", "LUMNAR_ENV='prod'"),
])
def test_production_refuses_a_laptop_setting_and_names_it(app_config, clean_env, variable,
                                                          value, named):
    clean_env.setenv(variable, value)
    overrides = {k: v for k, v in app_config.items() if k not in ("ENV_NAME", "BASE_URL")}
    message = refusal(overrides)
    assert message.startswith("Lumnar will not start in production")
    assert named in message


def test_production_refuses_the_development_outbox(app_config, clean_env):
    overrides = {k: v for k, v in app_config.items() if k != "ENV_NAME"}
    message = refusal({**overrides, "DEV_OUTBOX": True})
    assert "development outbox (DEV_OUTBOX) is on" in message


def test_production_names_every_laptop_setting_at_once(app_config, clean_env):
    clean_env.setenv("LUMNAR_BASE_URL", "http://chat.example.com")
    clean_env.setenv("LUMNAR_AUTOMATIONS_ALLOW_PRIVATE", "1")
    overrides = {k: v for k, v in app_config.items() if k not in ("ENV_NAME", "BASE_URL")}
    message = refusal({**overrides, "DEV_OUTBOX": True})
    assert message.count("\n- ") == 3


@pytest.mark.parametrize("base_url", [
    "https://chat.example.com", "http://127.0.0.1:5000", "http://127.8.9.10", "http://[::1]:8000",
    "http://localhost:5000",
])
def test_production_starts_with_https_or_loopback_and_safe_settings(app_config, clean_env,
                                                                    base_url):
    clean_env.setenv("LUMNAR_ENV", "production")
    clean_env.setenv("LUMNAR_BASE_URL", base_url)
    overrides = {k: v for k, v in app_config.items() if k not in ("ENV_NAME", "BASE_URL")}
    app = build_app(overrides)
    assert app.config["ENV_NAME"] == "production" and app.config["BASE_URL"] == base_url
    assert Client(app.test_client()).get("/healthz").status_code == 200


def test_development_allows_the_laptop_settings(app_config, clean_env):
    clean_env.setenv("LUMNAR_BASE_URL", "http://192.168.1.20:5000")
    clean_env.setenv("LUMNAR_AUTOMATIONS_ALLOW_PRIVATE", "1")
    overrides = {k: v for k, v in app_config.items() if k != "BASE_URL"}
    app = build_app(overrides)
    assert app.config["DEV_OUTBOX"] and app.config["AUTOMATIONS_ALLOW_PRIVATE"]


# --- how the processes are started -----------------------------------------------------------


def test_the_procfile_runs_as_production_on_every_address():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                 if line.strip())
    assert "--host ${HOST:-0.0.0.0}" in lines["web"]
    # Nothing in it says development: its processes get the production default.
    assert not any("LUMNAR_ENV" in command for command in lines.values())


def test_make_run_says_development_and_binds_to_loopback(clean_env):
    clean_env.delenv("PORT", raising=False)
    clean_env.setenv("HOST", "0.0.0.0")  # an exported HOST does not open the demo to the network
    printed = subprocess.run(["make", "-n", "-p", "run"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert "HOST=127.0.0.1 PORT=5000 LUMNAR_WORKER_FLAGS=--quiet honcho start -f Procfile web worker" in printed
    assert re.search(r"^run: LUMNAR_ENV = development$", printed, re.MULTILINE)
