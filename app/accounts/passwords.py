"""Password hashing (argon2id) and the strength rule: at least 10 characters, not a common one."""

from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 1000  # argon2 takes any length; this only stops absurd bodies

hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

# Verifying against this when no account matches keeps the response time the same, so timing
# does not tell which addresses have accounts.
_DUMMY_HASH = hasher.hash("lumnar-not-a-real-password")


def configure(app) -> None:
    """Use the cost the configuration asks for (the test suite asks for the cheapest)."""
    global hasher, _DUMMY_HASH
    time_cost, memory_kib = app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_KIB"]
    if (time_cost, memory_kib) != (hasher.time_cost, hasher.memory_cost):
        hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        _DUMMY_HASH = hasher.hash("lumnar-not-a-real-password")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    path = Path(__file__).with_name("common_passwords.txt")
    lines = path.read_text().splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def problem(password: str) -> str | None:
    """Why this password is not acceptable, or None when it is."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if password.lower() in common_passwords():
        return "This password is one of the most common ones; choose another."
    return None


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    try:
        return hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return hasher.check_needs_rehash(password_hash)
