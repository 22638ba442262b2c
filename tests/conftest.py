"""Fixtures: a fresh SQLite file per test, the Flask app, a client, users, and real SMTP."""

import os
import re
import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner
from jinja2 import BytecodeCache

from app import create_app, migrations
from app.db import connection, database
from tests.mailcatcher import MailCatcher

PASSWORD = "correct horse battery"


def pytest_addoption(parser):
    parser.addoption("--engine", choices=("sqlite", "postgres"), default="sqlite",
                     help="the database every test's app runs on (postgres: a throwaway "
                          "PostgreSQL cluster and Redis, see tests/servers.py)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "config(**overrides): extra app configuration for this test's `app_config`")
    config.addinivalue_line(
        "markers", "sqlite_only(why): a promise about SQLite's own machinery (its write lock, "
        "FTS5, PRAGMAs); deselected on the PostgreSQL pass, which proves that engine's own")


# The test modules proven on PostgreSQL + Redis so far: `pytest --engine=postgres` runs these
# (the others are deselected, not skipped, and run on SQLite only); the list grows as each area
# moves over.
POSTGRES_READY = {
    "test_billing.py", "test_csat.py", "test_widget_language.py", "test_promises.py", "test_contact_requests.py", "test_insight.py",
    "test_policies.py", "test_suspension.py", "test_security_alerts.py", "test_export.py",
    "test_restriction.py", "test_retention.py", "test_deletion.py",
    "test_accounts.py", "test_sessions.py", "test_team.py", "test_shared_mode.py",
    "test_postgres.py", "test_mail.py", "test_staff.py", "test_automation_runs.py",
    "test_automation_screens.py", "test_flows.py", "test_redaction_forms.py",
    "test_form_errors.py", "test_csrf_one_rule.py", "test_safe_defaults.py", "test_security.py",
    "test_net_guard.py", "test_contact.py",
    # The chat's two writes through the one writer, exactly once, replay, session cache.
    "test_chat_writes_one_route.py", "test_chat_exactly_once.py", "test_chat_stream_replay.py",
    "test_session_cache.py", "test_chat_automations.py",
    # The widget, the inbox and conversation pages, retention (search entries included).
    "test_chat_widget.py", "test_chat_dashboard.py", "test_chat_retention.py", "test_business_hours.py",
    # Search: accents folded, the last word as a prefix, highlights, one workspace's messages.
    "test_chat_search.py",
    # Live delivery: the hub, the chat writer, the streams' replay and what opening one costs;
    # events in commit order, wake-ups over Redis.
    "test_chat_streams.py", "test_chat_publish.py", "test_chat_render_once.py",
    "test_chat_writer.py", "test_chat_stream_open_idle.py", "test_chat_event_order.py",
    # The inbox in two panes, saved replies at a thousand.
    "test_inbox_split.py", "test_inbox_saved_replies.py", "test_labels.py", "test_notes.py",
    "test_reports.py",
    "test_alert_settings.py",
    # Every route's refusals and headers, CSRF everywhere, the smoke walk, the inbox's cost.
    "test_bad_input_answers.py", "test_csrf_everywhere.py", "test_headers_everywhere.py",
    "test_smoke.py", "test_chat_inbox_page_cost.py",
    # In Chromium against a live server (uvicorn + Huey consumer) on PostgreSQL + Redis: sign-up
    # with its e-mail through the worker, the live chat across origins; and two web processes passing chat events to each other over Redis. (The other browser
    # modules prove pages and scripts that read the database only through the same services:
    # they run once, on SQLite, so that make test stays under 15 minutes.)
    "test_accounts_browser.py", "test_chat_browser.py", "test_chat_cross_process.py",
    # The widget on a customer's page: its status answer and where it loaded (an upsert), the
    # site's page, away mode keeping the first words, friendly names.
    "test_widget_status.py", "test_widget_site_page.py", "test_widget_away.py",
    "test_widget_names.py", "test_widget_identity.py",
    # An older database upgrades with its rows intact; two releases at once migrate once.
    "test_migrations_upgrade.py",
}


# PostgreSQL's own promises (advisory-locked migrations, a generated search column): nothing to
# prove on SQLite, so not collected there.
POSTGRES_ONLY = {"test_postgres.py"}


def pytest_collection_modifyitems(config, items):
    if config.getoption("--engine") == "postgres":
        # LUMNAR_TEST_POSTGRES_TRY=test_x.py,test_y.py: try more modules while moving them over.
        trying = set(filter(None, os.environ.get("LUMNAR_TEST_POSTGRES_TRY", "").split(",")))
        keep = [item for item in items if item.path.name in POSTGRES_READY | trying
                and item.get_closest_marker("sqlite_only") is None]
    else:
        keep = [item for item in items if item.path.name not in POSTGRES_ONLY]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@pytest.fixture(scope="session")
def engine(request):
    return request.config.getoption("--engine")


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL cluster for the run (tests/servers.py)."""
    from tests.servers import Postgres

    server = Postgres().start()
    yield server
    # The last test's usage counts (app/insight/service.py) are written every few seconds and
    # at exit: dropped here, with the database they were counted for, not tried at exit against
    # a server that has gone (a warning at the end of every run).
    from app.insight.service import tally

    tally.take()
    server.stop()


@pytest.fixture(scope="session")
def postgres_database(postgres):
    """The tests' database, migrated once; each test leaves it empty again (see engine_config).
    Emptying 22 tables costs ~40 ms; a fresh copy of a template cost ~0.5 s, the checkpoint
    it waits for included (measured here)."""
    url = postgres.create("lumnar_test")
    app = create_app({**BASE_CONFIG, "DATABASE_URL": url, "MASTER_KEYS": TEST_MASTER_KEY,
                      "DATA_DIR": postgres.root / "app"})
    with app.app_context(), connection():
        migrations.run()
        tables = [name for (name,) in database.execute_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_version'").fetchall()]
    database.obj.close_all()
    yield url, "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"


@pytest.fixture(scope="session")
def redis_server():
    from tests.servers import Redis

    server = Redis().start()
    yield server
    server.stop()


@pytest.fixture
def engine_config(request, engine):
    """What the app's configuration needs for the engine under test: nothing for SQLite; for
    PostgreSQL the tests' database (emptied after each test), Redis, and the keys a shared
    set-up must be given (never generated)."""
    if engine != "postgres":
        yield {}
        return
    url, empty = request.getfixturevalue("postgres_database")
    redis = request.getfixturevalue("redis_server")
    yield {"DATABASE_URL": url, "REDIS_URL": redis.url, "MASTER_KEYS": TEST_MASTER_KEY,
           "RATELIMIT_STORAGE_URI": "memory://"}
    if database.obj is not None and hasattr(database.obj, "close_all"):
        database.obj.close_all()  # the test's pooled connections, so that nothing holds a lock
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(empty)


@pytest.fixture(autouse=True)
def _close_database():
    """Queries made by a test outside a request autoconnect; close what they leave open."""
    yield
    if database.obj is not None and not database.is_closed():  # None: no app in this process yet
        database.close()


@pytest.fixture(autouse=True)
def _empty_inline_queue():
    """In immediate mode Huey keeps retries in one in-memory store for the whole process;
    empty it so that no test sees another's scheduled retries."""
    yield
    from jobs import huey

    if huey.immediate:
        huey.flush()


@pytest.fixture
def smtp():
    catcher = MailCatcher().start()
    yield catcher
    catcher.stop()


@pytest.fixture
def endpoint():
    """A loopback HTTP server that automations may call (tests/loopback.py)."""
    from tests.loopback import Endpoint

    server = Endpoint()
    yield server
    server.stop()


@pytest.fixture
def app_config(request, tmp_path, smtp, engine_config):
    config = {**BASE_CONFIG, "DATA_DIR": tmp_path, "SMTP_URL": smtp.url, **engine_config}
    # @pytest.mark.config(SESSION_IDLE=..., ...) adds to or replaces these for one test.
    marker = request.node.get_closest_marker("config")
    if marker is not None:
        config.update(marker.kwargs)
    return config


# A fixed Fernet key: a shared set-up takes its master keys from the environment only.
TEST_MASTER_KEY = "ZmFrZS1tYXN0ZXIta2V5LWZvci10ZXN0cy0wMDAwMDA="
BASE_CONFIG = {
    "TESTING": True,
    # Said explicitly: the app runs as production unless told otherwise, and tests use
    # laptop settings (http base URL, the dev outbox) that production refuses.
    "ENV_NAME": "development",
    "SECRET_KEY": "test-secret-key",
    "HUEY_IMMEDIATE": True,  # tasks run inline; end-to-end tests use a real consumer
    "RATELIMIT_ENABLED": False,
    "BASE_URL": "http://localhost",
    # Real argon2id at its lowest cost: production's ~0.2 s a hash would dominate the run.
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_KIB": 64,
}


class _SharedTemplateCache(BytecodeCache):
    """Compiled templates kept for the whole run: every test builds a new app, and compiling
    the same templates again for each one would be most of a short test's time. Jinja checks
    each entry against the template's source checksum, so an edited template is recompiled."""

    def __init__(self):
        self.store = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CACHE = _SharedTemplateCache()


def build_app(config: dict, migrate: bool = True):
    """The app for `config`, its database migrated (unless migrate=False)."""
    app = create_app(config)
    app.jinja_env.bytecode_cache = TEMPLATE_CACHE
    if migrate:
        with app.app_context(), connection():
            migrations.run()
    return app


@pytest.fixture
def app(app_config):
    return build_app(app_config)


class Client:
    """Flask's test client plus the CSRF token a browser would have from the page it shows."""

    def __init__(self, flask_client):
        self.raw = flask_client

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def csrf(self) -> str:
        html = self.raw.get("/privacy").get_data(as_text=True)
        return re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)

    def post_form(self, url, data=None, htmx=False, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf())
        headers = kwargs.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        return self.raw.post(url, data=data, headers=headers, **kwargs)


@pytest.fixture
def client(app):
    return Client(app.test_client())


def make_user(app, email="owner@example.com", name="Olive Owner", password=PASSWORD):
    """A verified account with its own workspace, made through the same service as sign-up."""
    from app.accounts import service
    from app.accounts.models import User
    from app.db import utcnow

    with app.test_request_context(), connection():
        service.sign_up(name, email, password)
        user = User.by_email(email)
        user.email_verified_at = utcnow()
        user.save()
        return user


@pytest.fixture
def user(app):
    return make_user(app)


def log_in(client, email="owner@example.com", password=PASSWORD):
    response = client.post_form("/login", {"email": email, "password": password})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


def staff_client(app, email="staff@lumnar.example") -> Client:
    """A client logged in as a Lumnar staff member (made as `flask grant-staff` would)."""
    from app.accounts.models import User

    make_user(app, email=email, name="Stella Staff")
    with connection():
        User.update(is_staff=True).where(User.email == email).execute()
    client = Client(app.test_client())
    log_in(client, email)
    return client


@pytest.fixture
def auth(client, user):
    log_in(client)
    return client


def old_token(app, purpose: str, payload, age: timedelta) -> str:
    """A signed link token as the app makes it, but stamped `age` ago (an expired link
    without waiting): the app's own serializer with a signer whose clock is in the past."""
    from app.accounts import service

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age.total_seconds())

    with app.app_context():
        serializer = service._serializer(purpose)
        serializer.signer = PastSigner
        return serializer.dumps(payload)


def db_state(*models) -> dict:
    """Every row of the given tables (default: all product tables), to prove that a refused
    request changed nothing: compare the value before and after."""
    from app.accounts.models import ACCOUNT_MODELS
    from app.mail.models import OutboundEmail

    with connection():
        return {m.__name__: list(m.select().order_by(m._meta.primary_key).dicts())
                for m in (models or (*ACCOUNT_MODELS, OutboundEmail))}


def strip_csrf(html: str) -> str:
    """A page without its CSRF tokens (they carry a timestamp), for comparing two pages."""
    html = re.sub(r'"X-CSRFToken": "[^"]+"', '"X-CSRFToken": ""', html)
    return re.sub(r'(name="csrf_token" type="hidden" value=")[^"]+"', r'\1"', html)
