"""Past one box: with DATABASE_URL or REDIS_URL set, processes may run on several machines, so
what they must agree on comes from the environment, never from one machine's data folder."""

import os

import pytest

from app import config, create_app

POSTGRES_URL = "postgresql://lumnar@db.internal:5432/lumnar"


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    for name in [k for k in os.environ if k.startswith("LUMNAR_") or k in ("DATABASE_URL", "REDIS_URL")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LUMNAR_ENV", "development")
    monkeypatch.setenv("LUMNAR_DATA_DIR", str(tmp_path))
    return monkeypatch


@pytest.mark.parametrize("setting", ["DATABASE_URL", "REDIS_URL"])
def test_a_shared_set_up_refuses_to_start_without_the_keys_naming_each(bare_env, setting, tmp_path):
    bare_env.setenv(setting, POSTGRES_URL if setting == "DATABASE_URL" else "redis://cache:6379/0")
    with pytest.raises(SystemExit) as stopped:
        create_app()
    message = str(stopped.value)
    assert "LUMNAR_SECRET_KEY is not set" in message
    assert "LUMNAR_MASTER_KEYS is not set" in message
    # Nothing was generated into this machine's data folder in its place.
    assert not (tmp_path / "secret_key").exists()


def test_a_shared_set_up_with_only_the_secret_key_still_names_the_master_keys(bare_env):
    bare_env.setenv("DATABASE_URL", POSTGRES_URL)
    bare_env.setenv("LUMNAR_SECRET_KEY", "s" * 40)
    with pytest.raises(SystemExit) as stopped:
        create_app()
    assert "LUMNAR_MASTER_KEYS is not set" in str(stopped.value)
    assert "LUMNAR_SECRET_KEY" not in str(stopped.value)


def test_one_box_still_makes_its_own_key_file(bare_env, tmp_path):
    cfg = config.load()
    assert config.shared_problems(cfg) == []
    assert (tmp_path / "secret_key").read_text().strip() == cfg["SECRET_KEY"]


def test_with_redis_the_rate_limits_are_counted_in_redis_unless_told_otherwise(bare_env):
    bare_env.setenv("REDIS_URL", "redis://cache:6379/0")
    assert config.load()["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/0"
    bare_env.setenv("LUMNAR_RATELIMIT_STORAGE", "memory://")
    assert config.load()["RATELIMIT_STORAGE_URI"] == "memory://"
