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
    # Built first, one after the other: Python 3.11 may fail compiling in two threads at once
    # ("AST constructor recursion depth mismatch"); the migrations are what must overlap.
    releases = [build_app({**app_config, "DATABASE_URL": url}, migrate=False) for _ in range(2)]

    def release(one):
        try:
            with one.app_context(), connection():
                applied.append(migrations.run())
        except Exception as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=release, args=(one,)) for one in releases]
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


def test_with_redis_a_real_worker_on_postgresql_delivers_what_the_web_queued(
        app_config, smtp, tmp_path):
    """The web side queues on Redis (REDIS_URL), a real `huey_consumer` on another process
    takes the task and reads the e-mail from PostgreSQL: nothing shared but the servers."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from app.mail import service as mail
    from jobs import huey
    from tests.conftest import TEST_MASTER_KEY, build_app

    web = build_app({**app_config, "HUEY_IMMEDIATE": False})
    try:
        with web.app_context(), connection():
            (email,) = mail.store(["olive@example.com"], "verify", "Confirm your e-mail",
                                  user={"name": "Olive"}, url="https://lumnar.example/verify")
            mail.hand_over([email.id])
            assert huey.pending_count() == 1  # waiting in Redis, not run here
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "LUMNAR_ENV": "development", "LUMNAR_DATA_DIR": str(tmp_path),
               "DATABASE_URL": app_config["DATABASE_URL"], "REDIS_URL": app_config["REDIS_URL"],
               "LUMNAR_SECRET_KEY": app_config["SECRET_KEY"], "LUMNAR_MASTER_KEYS": TEST_MASTER_KEY,
               "LUMNAR_SMTP_URL": smtp.url}
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "huey_consumer"), "jobs.main.huey", "--workers", "1"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            smtp.wait_for("olive@example.com", "Confirm your e-mail", timeout=30)
        finally:
            worker.terminate()
            worker.wait(10)
    finally:
        huey.immediate = True  # the other tests' queue: in memory


def test_migrate_to_moves_every_row_and_postgresql_carries_on_from_there(
        postgres, app_config, tmp_path, monkeypatch):
    """`flask migrate-to URL`: a SQLite database with accounts, a chat with a file, a stored
    credential and an automation moves over whole; on PostgreSQL the owner logs in, the
    secret still opens, and new rows get new ids."""
    from app import move_database
    from app.accounts import service as accounts
    from app.accounts.models import User
    from app.automations import service as automations
    from app.automations import vault
    from app.automations.models import Credential
    from app.chat import service as chat
    from app.chat.models import Attachment, Message
    from app.insight import service as insight
    from app.insight.models import InsightCount
    from app.widget import service as widget
    from app.widget.models import Site
    from tests.chat_fixtures import png_bytes
    from tests.conftest import build_app

    one_box = {k: v for k, v in app_config.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    sqlite_app = build_app({**one_box, "DATA_DIR": tmp_path / "one-box"})
    with sqlite_app.test_request_context(), connection():
        assert dialect() == "sqlite"
        owner = accounts.sign_up("Olive Owner", "olive@example.com", "correct horse battery")
        User.update(email_verified_at=owner.created_at).where(User.id == owner.id).execute()
        ws = owner.memberships.get().workspace_id
        site = widget.save_site(Site(workspace=ws), name="Shop",
                                allowed_origins="https://shop.example.com")
        visitor, _ = widget.new_visitor(site)
        for text in ("Hello", "Is the blue one in stock?"):
            chat.post_visitor_message(site, visitor, text)
        chat.post_visitor_message(site, visitor, "", upload=("photo.png", "image/png", png_bytes()))
        cred = vault.store(ws, "Shop", "API", "api_token", {"token": "s3cret-token-value"})
        automations.create_automation(ws, name="Every morning", flow="http_request",
                                      config={"url": "https://example.com/hook", "method": "POST",
                                              "credential": str(cred.id)},
                                      trigger="schedule", cron="0 9 * * *")
        # Usage counters: a table keyed by three columns, paged by all of them.
        for day in ("2026-11-01", "2026-11-02"):
            for name in ("chat.inbox", "public.home", "billing.billing_page"):
                InsightCount.create(day=day, kind="page", name=name, count=3)
        insight.flush()  # the events counted above, written now rather than during the move
        before = {"messages": Message.select().count(), "attachments": Attachment.select().count(),
                  "counts": InsightCount.select().count()}
        last_message = Message.select().order_by(Message.id.desc()).get().id

    target = postgres.create("moved_here")
    monkeypatch.setattr(move_database, "BATCH", 2)  # several batches per table, keys included
    runner = sqlite_app.test_cli_runner()
    result = runner.invoke(args=["migrate-to", target])
    assert result.exit_code == 0, result.output
    assert "every count matches" in result.output
    # A second run finds rows there and refuses, changing nothing.
    again = runner.invoke(args=["migrate-to", target])
    assert again.exit_code != 0 and "already holds rows" in again.output

    pg_app = build_app({**app_config, "DATABASE_URL": target}, migrate=False)
    with pg_app.test_request_context(), connection():
        assert dialect() == "postgres"
        assert {"messages": Message.select().count(), "attachments": Attachment.select().count(),
                "counts": InsightCount.select().count()} == before
        assert Attachment.get().data == png_bytes()
        assert vault.reveal(Credential.get()) == {"token": "s3cret-token-value"}
        assert accounts.authenticate("olive@example.com", "correct horse battery").id == \
            User.by_email("olive@example.com").id
        site = Site.get()
        visitor = site.visitors.get()
        newer = chat.post_visitor_message(site, visitor, "Still there?")
        assert newer.id > last_message
    database.obj.close_all()
    postgres.drop("moved_here")
