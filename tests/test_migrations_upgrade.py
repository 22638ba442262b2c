"""Upgrading a database in use: one left at an older schema version, with rows in it, reaches
the newest version with every row intact, and two releases upgrading it at once apply each
step once. On both engines (`make test` runs this module on PostgreSQL too)."""

import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager

import pytest

from app import migrations
from app.accounts.models import ACCOUNT_MODELS
from app.chat import service as chat
from app.chat.models import CHAT_MODELS
from app.db import connection, database
from app.mail.models import OutboundEmail
from app.widget import service as widget
from app.widget.models import Site
from tests.conftest import build_app, db_state, make_user

OLDER = 5  # before the automations step (6) and messages' client ids (10)


@pytest.fixture
def own_app(request, engine, app_config):
    """An app on a database of this test's own, not migrated yet. The upgrade drops columns,
    which the shared PostgreSQL database the other tests run on must never see; on SQLite
    every test's file is its own already."""
    if engine != "postgres":
        yield build_app(app_config, migrate=False)
        return
    postgres = request.getfixturevalue("postgres")
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    yield build_app({**app_config, "DATABASE_URL": postgres.create(name)}, migrate=False)
    database.obj.close_all()  # this database's pooled connections, so that it can be dropped
    postgres.drop(name)


def every_row() -> dict:
    return db_state(*ACCOUNT_MODELS, OutboundEmail, *CHAT_MODELS)


@pytest.fixture
def older(own_app):
    """The database as release 5 left it, with an owner, their workspace, a site and a
    visitor's messages in it; returns (app, every row as the newest code reads them).

    Step 1 creates tables from today's models, so an older database is made by taking the
    newest one back: the columns that steps 6 and 10 add are dropped (rows and all), and the
    steps after 5 are no longer recorded. Every step must run on a database that already has
    its effect (a fresh database's tables come from today's models), so the ones after 5
    that changed nothing here apply again without harm."""
    with own_app.app_context(), connection():
        migrations.run()
    owner = make_user(own_app)
    with own_app.test_request_context(), connection():
        ws = owner.memberships.get().workspace_id
        site = widget.save_site(Site(workspace=ws), name="Shop",
                                allowed_origins="https://shop.example.com")
        visitor, _ = widget.new_visitor(site)
        for body in ("Hello", "Is the blue teapot in stock?"):
            chat.post_visitor_message(site, visitor, body)
    rows = every_row()
    with own_app.app_context(), connection():
        for column in ("timezone", "run_log_days", "automations_paused"):
            database.execute_sql(f'ALTER TABLE "workspace" DROP COLUMN "{column}"')
        database.execute_sql('DROP INDEX IF EXISTS "message_client_id"')  # SQLite: first
        database.execute_sql('ALTER TABLE "message" DROP COLUMN "client_id"')
        migrations.SchemaVersion.delete().where(migrations.SchemaVersion.version > OLDER).execute()
    return own_app, rows


NEWER_STEPS = [f"{v:04d}_{name}" for v, name, _ in migrations.STEPS if v > OLDER]


def test_a_database_at_an_older_version_upgrades_to_the_newest_with_its_rows_intact(older):
    app, rows = older
    with app.app_context(), connection():
        assert migrations.run() == NEWER_STEPS
        assert migrations.pending() == []
        # The columns came back at their defaults, which are what these rows were read with.
        assert database.execute_sql(
            'SELECT "timezone", "run_log_days", "automations_paused" FROM "workspace"'
        ).fetchall() == [("UTC", 14, 0)]
    assert every_row() == rows
    # And the upgraded database is in use at once: a message's search finds it.
    ws = rows["Membership"][0]["workspace"]
    with app.test_request_context(), connection():
        assert [hit[3] for hit in chat.search(ws, "teapot")] == [
            f"Is the blue {chat.HL_START}teapot{chat.HL_END} in stock?"]


@contextmanager
def sqlite_step_in_progress(app):
    """Another release's migration step under way: a write transaction of its own on the
    file (BEGIN IMMEDIATE, as run() takes). Who waits behind it cannot be seen from here, so
    the runs are given time to reach it (they read what is pending first, without a lock)."""
    held = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    held.execute("BEGIN IMMEDIATE")
    try:
        yield lambda: time.sleep(0.3)  # well inside the 5 s busy timeout the runs wait for
    finally:
        held.execute("ROLLBACK")
        held.close()


@contextmanager
def postgres_run_in_progress(app):
    """Another release's run under way: the advisory lock run() takes (RUN_LOCK), held on a
    connection of its own; both runs are seen waiting for it in pg_locks."""
    import psycopg

    lock, unlock = migrations.RUN_LOCK["postgres"]
    held = psycopg.connect(app.config["DATABASE_URL"], autocommit=True)
    held.execute(lock)

    def both_waiting():
        deadline = time.monotonic() + 10
        while held.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND NOT granted").fetchone()[0] < 2:
            assert time.monotonic() < deadline, "the two runs never reached the lock"
            time.sleep(0.01)

    try:
        yield both_waiting
    finally:
        held.execute(unlock)
        held.close()


# What makes a second run wait, in each engine's words.
RUN_IN_PROGRESS = {"sqlite": sqlite_step_in_progress, "postgres": postgres_run_in_progress}


def test_two_releases_upgrading_at_once_apply_each_step_once(older, engine):
    app, rows = older
    applied, errors = [], []

    def release():
        try:
            with app.app_context(), connection():  # each thread its own connection
                applied.append(migrations.run())
        except Exception as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    # Both runs start while a third holds the lock, so both have begun before either applies
    # anything: left to chance, one often finished before the other started.
    with RUN_IN_PROGRESS[engine](app) as both_started:
        threads = [threading.Thread(target=release) for _ in range(2)]
        for t in threads:
            t.start()
        both_started()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(applied) == 2
    # Each step applied by exactly one of them (on PostgreSQL the first takes them all).
    assert sorted(applied[0] + applied[1]) == NEWER_STEPS
    with app.app_context(), connection():
        assert [v.version for v in migrations.SchemaVersion.select().order_by(
            migrations.SchemaVersion.version)] == [v for v, _, _ in migrations.STEPS]
    assert every_row() == rows


def test_migrate_to_copies_every_table_the_migrations_make(app):
    """`flask migrate-to` copies the tables it knows (app/move_database.py): a table added by
    a migration and left out of that list would be lost in the move."""
    from app.db import connection, database
    from app.move_database import product_models

    own = {"schema_version", "task", "schedule", "kv", "counter",  # ours and Huey's
           "search_index_state", "message_fts",  # SQLite's search index, rebuilt from messages
           "sqlite_sequence"}  # SQLite's own
    with connection():
        tables = {name for name in database.get_tables()
                  if not name.startswith("message_fts_") and name not in own}
    assert tables == {model._meta.table_name for model in product_models()}
