"""PostgreSQL's own promises (run with `pytest --engine=postgres`): migrations that two
releases cannot run at once, ids never given twice, and the same schema as SQLite's."""

import threading

from app import migrations
from app.db import connection, database, dialect

# Collected only with --engine=postgres (tests/conftest.py POSTGRES_ONLY): `make test` runs it.


def test_the_app_runs_on_postgresql_when_database_url_says_so(app):
    with app.app_context(), connection():
        assert dialect() == "postgres"
        assert database.execute_sql("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 130000


def test_two_releases_migrating_at_once_apply_each_step_once(postgres, app_config):
    from tests.conftest import build_app

    name = "fresh_migrations"
    url = postgres.create(name)
    applied, errors = [], []

    def release():
        try:
            one = build_app({**app_config, "DATABASE_URL": url}, migrate=False)
            with one.app_context(), connection():
                applied.append(migrations.run())
        except Exception as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=release) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    done = sorted(len(names) for names in applied)
    assert done == [0, len(migrations.STEPS)]  # one release applied all, the other nothing
    database.obj.close_all()
    postgres.drop(name)


def test_message_search_column_is_generated_by_the_database(app):
    with app.app_context(), connection():
        kind = database.execute_sql(
            "SELECT is_generated FROM information_schema.columns "
            "WHERE table_name = 'message' AND column_name = 'search'").fetchone()
    assert kind == ("ALWAYS",)


def test_the_health_check_asks_postgresql_on_a_connection_of_its_own(app, postgres):
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok", "database": True, "queue": True}
