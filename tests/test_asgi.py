"""The ASGI root: what it compresses and what it leaves alone."""

import pytest

from app.asgi import StaticGZip


def test_only_secret_free_responses_are_compressed():
    assert StaticGZip.wanted("/static/vendor/htmx.min.js")
    assert StaticGZip.wanted("/widget.js")
    assert StaticGZip.wanted("/widget/site_abc")
    # Pages with CSRF tokens, chat text or stream tickets are never compressed (BREACH).
    for path in ("/login", "/dashboard/inbox", "/widget/site_abc/chat", "/widget/site_abc/messages"):
        assert not StaticGZip.wanted(path)


@pytest.mark.parametrize("background, expected", [(True, 0), (False, 1000)])
def test_the_web_process_leaves_wal_checkpoints_to_its_background_task(app_config, background,
                                                                       expected):
    from app import db
    from tests.conftest import build_app

    app = build_app({**app_config, "BACKGROUND_CHECKPOINTS": background})
    with app.app_context(), db.connection():
        assert db.database.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == expected
        for i in range(50):
            db.database.execute_sql(
                "INSERT INTO workspace (name, created_at, timezone, run_log_days, automations_paused) "
                "VALUES (?, '2026-01-01', 'UTC', 14, 0)", (f"w{i}",))
        # (While a connection is open: the last one to close checkpoints by itself.)
        busy, frames, copied = db.checkpoint(app.config["DATABASE"])
    assert busy == 0 and frames > 0 and copied == frames


def test_under_steady_writes_the_wal_starts_again_instead_of_growing(app_config, monkeypatch):
    """Writes that never pause for long (a busy chat) always come in while a checkpoint is
    copying, and SQLite starts the WAL again only after one that copied every frame: without
    help the file grew for as long as the writes went on. Past RESTART_FRAMES the checkpointer
    copies the last frames again with this process's writers held back, so the WAL starts
    again and stays small."""
    import os
    import threading
    import time

    from app import db
    from tests.conftest import build_app

    monkeypatch.setattr(db, "RESTART_FRAMES", 64)
    app = build_app({**app_config, "BACKGROUND_CHECKPOINTS": True})
    path = app.config["DATABASE"]
    stop = threading.Event()

    def chat():
        with app.app_context(), db.connection():
            while not stop.is_set():
                with db.database.atomic():
                    db.database.execute_sql(
                        "INSERT INTO workspace (name, created_at, timezone, run_log_days, "
                        "automations_paused) VALUES (?, '2026-01-01', 'UTC', 14, 0)", ("w" * 3000,))
                time.sleep(0.0005)

    writer = threading.Thread(target=chat)
    writer.start()
    sizes = []
    try:
        for _ in range(40):
            time.sleep(0.05)
            db.checkpoint(path)
            sizes.append(os.path.getsize(f"{path}-wal"))
    finally:
        stop.set()
        writer.join()
    with app.app_context(), db.connection():
        written = db.database.execute_sql("SELECT count(*) FROM workspace").fetchone()[0]
    assert written > 1000  # the writes went on all along (each put a page or two in the WAL)
    assert max(sizes) < written * 4096 / 4  # without the second pass: about 12 times this
