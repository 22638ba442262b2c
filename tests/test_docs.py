"""The README stays true: it starts with the two commands and documents every setting."""

from pathlib import Path

from app.config import ENV_VARS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    head = "\n".join(README.splitlines()[:10])
    assert "make run" in head and "make test" in head


def test_every_environment_variable_is_documented_in_the_readme():
    missing = [name for name in ENV_VARS if f"`{name}`" not in README]
    assert not missing, f"README lacks: {missing}"


def test_every_environment_variable_the_code_reads_is_listed():
    import re

    root = Path(__file__).resolve().parent.parent
    read = set()
    for path in list((root / "app").rglob("*.py")) + list((root / "jobs").rglob("*.py")):
        read |= set(re.findall(r"\"(LUMNAR_[A-Z_]+)\"", path.read_text()))
    assert read <= set(ENV_VARS), f"not in ENV_VARS: {read - set(ENV_VARS)}"
