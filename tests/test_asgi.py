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
