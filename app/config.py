"""Configuration: defaults (production, this machine), then LUMNAR_* variables, then overrides."""

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from app.billing.plans import FOR_SALE, INTERVALS, price_setting

ROOT = Path(__file__).resolve().parent.parent

# Every environment variable Lumnar reads, with its default. The README documents each one
# and a test fails when one is missing there, so this table is the single source.
ENV_VARS = {
    "LUMNAR_ENV": ("production", "`production` or `development`. Development adds the outbox page (staff only) and the demo shop, and allows settings that only suit a laptop; production refuses to start with those (see Running in production)."),
    "LUMNAR_DATA_DIR": ("data", "Folder for the database, the secret key file and backups."),
    "LUMNAR_DATABASE": ("<data dir>/lumnar.db", "Path of the one SQLite file (when DATABASE_URL is unset)."),
    "DATABASE_URL": ("(empty: the SQLite file)", "`postgresql://user:pass@host:5432/name` runs on PostgreSQL instead of the SQLite file (see Outgrowing one box). The secret key and master keys must then come from the environment."),
    "LUMNAR_DATABASE_POOL_SIZE": ("10", "PostgreSQL connections each process keeps at most (see Outgrowing one box for sizing it against the server's max_connections)."),
    "REDIS_URL": ("(empty: no Redis)", "`redis://host:6379/0` moves the task queue, the rate limits' counters and the wake-ups between web processes to Redis. The secret key and master keys must then come from the environment."),
    "LUMNAR_SECRET_KEY": ("generated into <data dir>/secret_key", "Key that signs sessions and links."),
    "LUMNAR_BASE_URL": ("http://127.0.0.1:5000", "Public address, used in e-mailed links; https turns on Secure cookies and HSTS."),
    "LUMNAR_SMTP_URL": ("(empty: mail stays in the outbox)", "`smtp://user:pass@host:port`, `smtp+starttls://…` or `smtps://…`."),
    "LUMNAR_MAIL_FROM": ("Lumnar <no-reply@lumnar.localhost>", "Sender of every e-mail."),
    "LUMNAR_CONTACT_EMAIL": ("privacy@lumnar.localhost", "The one address people are told to write to (the contact page, the privacy page); someone who can act on data requests must read it. Set it on a server: the default reaches nobody."),
    "LUMNAR_MASTER_KEYS": ("generated into <data dir>/master_keys", "Fernet keys that protect stored credentials, comma-separated, newest first. Keep them outside the database and its backups."),
    "LUMNAR_AUTOMATIONS_ALLOW_PRIVATE": ("0", "`1` lets automations reach private, loopback and link-local addresses (tests and local set-ups only)."),
    "LUMNAR_TRUST_PROXY": ("0", "Number of reverse proxies in front of the app whose X-Forwarded-* headers to trust."),
    "LUMNAR_RATELIMIT": ("1", "`0` turns per-IP rate limits off."),
    "LUMNAR_RATELIMIT_STORAGE": ("memory://", "flask-limiter storage URI (per process by default)."),
    "LUMNAR_SESSION_IDLE_MINUTES": ("120", "A session unused this long ends."),
    "LUMNAR_SESSION_MAX_HOURS": ("336", "A session ends this long after log-in, used or not."),
    "LUMNAR_LOCKOUT_ATTEMPTS": ("10", "Failed log-ins in a row from one client before that client is locked out of the address; as many from everywhere start slowing the address down."),
    "LUMNAR_LOCKOUT_MINUTES": ("15", "How long a client's lock lasts, and how long a run of failures is remembered."),
    "LUMNAR_MAX_BODY_BYTES": ("1048576", "Largest request body accepted (413 beyond), whether it states its length or comes in chunks (`Transfer-Encoding: chunked`)."),
    "PORT": ("5000", "Port the web process listens on (Procfile)."),
    "HOST": ("0.0.0.0 (127.0.0.1 under `make run`)", "Address the web process listens on (Procfile)."),
    "STRIPE_SECRET_KEY": ("(empty: billing not configured, every workspace on the demo plan)", "Stripe secret key (`sk_test_…` or `sk_live_…`). With it, plans are enforced and owners pay through Stripe Checkout (see Billing)."),
    "STRIPE_WEBHOOK_SECRET": ("(empty)", "The signing secret (`whsec_…`) of the Stripe webhook endpoint that points at `/billing/webhook`."),
    "LUMNAR_STRIPE_PRICE_PRO_MONTHLY": ("(empty)", "Stripe Price id of the Pro plan, paid monthly; `flask billing setup` prints the four price settings."),
    "LUMNAR_STRIPE_PRICE_PRO_YEARLY": ("(empty)", "Stripe Price id of the Pro plan, paid yearly."),
    "LUMNAR_STRIPE_PRICE_BUSINESS_MONTHLY": ("(empty)", "Stripe Price id of the Business plan, paid monthly."),
    "LUMNAR_STRIPE_PRICE_BUSINESS_YEARLY": ("(empty)", "Stripe Price id of the Business plan, paid yearly."),
    "LUMNAR_STRIPE_AUTOMATIC_TAX": ("0", "`1` asks Stripe Checkout to compute tax (Stripe Tax must be set up in the Stripe account)."),
    "LUMNAR_STRIPE_API_BASE": ("(empty: Stripe's own address)", "Where Stripe's API is reached; only for a Stripe test double or proxy."),
    "LUMNAR_BILLING_RETENTION_YEARS": ("10", "How long invoices and billing records are kept after a workspace is deleted (the law's retention period)."),
    "LUMNAR_AUTOMATIONS_RETRY_BASE_SECONDS": ("30", "Wait before an automation's second try; each later try waits twice as long (with jitter)."),
}


def _env(name, default=None):
    value = os.environ.get(name)
    return default if value in (None, "") else value


def _secret_key(data_dir: Path) -> str:
    """Read the signing key from the environment or from a 0600 file made once on first run."""
    key = _env("LUMNAR_SECRET_KEY")
    if key:
        return key
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting together must not write two different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def load(overrides=None) -> dict:
    overrides = dict(overrides or {})
    data_dir = Path(overrides.get("DATA_DIR") or _env("LUMNAR_DATA_DIR", str(ROOT / "data")))
    if not data_dir.is_absolute():
        data_dir = ROOT / data_dir
    base_url = _env("LUMNAR_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    secure = base_url.startswith("https://")
    cfg = {
        # Production unless told otherwise: a deploy that forgets the variable gets the safe mode.
        "ENV_NAME": _env("LUMNAR_ENV", "production"),
        "DATA_DIR": data_dir,
        "DATABASE": _env("LUMNAR_DATABASE", str(data_dir / "lumnar.db")),
        # Past one box (both unset: the SQLite file and the in-process queue, as on a laptop).
        "DATABASE_URL": _env("DATABASE_URL", ""),
        "DATABASE_POOL_SIZE": int(_env("LUMNAR_DATABASE_POOL_SIZE", "10")),
        "REDIS_URL": _env("REDIS_URL", ""),
        "BASE_URL": base_url,
        "SMTP_URL": _env("LUMNAR_SMTP_URL", ""),
        "MASTER_KEYS": _env("LUMNAR_MASTER_KEYS", ""),
        "MAIL_FROM": _env("LUMNAR_MAIL_FROM", "Lumnar <no-reply@lumnar.localhost>"),
        "CONTACT_EMAIL": _env("LUMNAR_CONTACT_EMAIL", "privacy@lumnar.localhost"),
        # Automations may only reach public addresses unless this is on (SSRF guard).
        "AUTOMATIONS_ALLOW_PRIVATE": _env("LUMNAR_AUTOMATIONS_ALLOW_PRIVATE", "0") not in ("0", "false", "no"),
        "TRUST_PROXY": int(_env("LUMNAR_TRUST_PROXY", "0")),
        "RATELIMIT_ENABLED": _env("LUMNAR_RATELIMIT", "1") != "0",
        # With several processes, counters kept in each one's memory would multiply every limit
        # by the number of processes: with Redis they are shared.
        "RATELIMIT_STORAGE_URI": _env("LUMNAR_RATELIMIT_STORAGE", _env("REDIS_URL", "memory://")),
        "RATELIMIT_HEADERS_ENABLED": True,
        "SESSION_IDLE": timedelta(minutes=int(_env("LUMNAR_SESSION_IDLE_MINUTES", "120"))),
        "SESSION_MAX": timedelta(hours=int(_env("LUMNAR_SESSION_MAX_HOURS", "336"))),
        "LOCKOUT_ATTEMPTS": int(_env("LUMNAR_LOCKOUT_ATTEMPTS", "10")),
        "LOCKOUT_MINUTES": int(_env("LUMNAR_LOCKOUT_MINUTES", "15")),
        "MAX_CONTENT_LENGTH": int(_env("LUMNAR_MAX_BODY_BYTES", str(1024 * 1024))),
        # Session cookie: HttpOnly and SameSite=Lax always, Secure whenever we are served on https.
        "SESSION_COOKIE_NAME": "lumnar_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        "PREFERRED_URL_SCHEME": "https" if secure else "http",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=int(_env("LUMNAR_SESSION_MAX_HOURS", "336"))),
        # The cookie is sent again when the session changes (its "seen" time moves at most
        # once a minute), not re-signed on every request: a chat reply need not pay for it.
        "SESSION_REFRESH_EACH_REQUEST": False,
        # Sessions and visitor tokens are looked up once per this many seconds, not once per
        # chat message; a session revoked by another process ends within it (app/shortcache.py).
        "SHORT_CACHE_SECONDS": 5.0,
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session that holds it
        "WTF_CSRF_SSL_STRICT": secure,
        "HUEY_IMMEDIATE": False,
        # Billing (app/billing): off without a secret key (every workspace on the demo plan).
        "STRIPE_SECRET_KEY": _env("STRIPE_SECRET_KEY", ""),
        "STRIPE_WEBHOOK_SECRET": _env("STRIPE_WEBHOOK_SECRET", ""),
        "STRIPE_API_BASE": _env("LUMNAR_STRIPE_API_BASE", ""),
        "STRIPE_AUTOMATIC_TAX": _env("LUMNAR_STRIPE_AUTOMATIC_TAX", "0") == "1",
        "STRIPE_PRICES": {(plan.key, interval): _env(price_setting(plan, interval), "")
                          for plan in FOR_SALE for interval in INTERVALS},
        "BILLING_RETENTION_YEARS": int(_env("LUMNAR_BILLING_RETENTION_YEARS", "10")),
        "AUTOMATIONS_RETRY_BASE_SECONDS": float(_env("LUMNAR_AUTOMATIONS_RETRY_BASE_SECONDS", "30")),
        # argon2id cost: the library's recommendation (RFC 9106 low-memory profile).
        "ARGON2_TIME_COST": 3,
        "ARGON2_MEMORY_KIB": 65536,
    }
    cfg.update(overrides)
    # Settings that follow from the public address, computed after overrides so that a test
    # or an embedding app that sets BASE_URL gets them too.
    secure = str(cfg["BASE_URL"]).startswith("https://")
    for key in ("SESSION_COOKIE_SECURE", "WTF_CSRF_SSL_STRICT"):
        if key not in overrides:
            cfg[key] = secure
    if "PREFERRED_URL_SCHEME" not in overrides:
        cfg["PREFERRED_URL_SCHEME"] = "https" if secure else "http"
    cfg["DATA_DIR"] = Path(cfg["DATA_DIR"])
    if "DATABASE" not in overrides and "DATA_DIR" in overrides:
        cfg["DATABASE"] = str(cfg["DATA_DIR"] / "lumnar.db")
    cfg["DATA_DIR"].mkdir(parents=True, exist_ok=True)
    # Only an explicit "development" turns the outbox on: a misspelt LUMNAR_ENV must not.
    cfg["DEV_OUTBOX"] = cfg.get("DEV_OUTBOX", cfg["ENV_NAME"] == "development")
    if "SECRET_KEY" not in cfg:
        # Shared by several machines, the key cannot be a file one of them made: it must come
        # from the environment (shared_problems() refuses to start without it).
        cfg["SECRET_KEY"] = (_env("LUMNAR_SECRET_KEY", "") if shared(cfg)
                             else _secret_key(cfg["DATA_DIR"]))
    return cfg


def shared(cfg: dict) -> bool:
    """Whether this process is one of several sharing a database server or Redis (so possibly
    on other machines, with no `data/` folder in common)."""
    return bool(cfg.get("DATABASE_URL") or cfg.get("REDIS_URL"))


def shared_problems(cfg: dict) -> list[str]:
    """What several machines cannot agree on unless the environment says it: a key that one
    machine generated into its own data folder would sign and encrypt differently from the
    next one's. The factory refuses to start when any is missing, naming each."""
    if not shared(cfg):
        return []
    problems = []
    if not cfg.get("SECRET_KEY"):
        problems.append("LUMNAR_SECRET_KEY is not set: with DATABASE_URL or REDIS_URL the "
                        "processes may run on several machines, and all of them must sign "
                        "sessions and links with the same key.")
    if not cfg.get("MASTER_KEYS"):
        problems.append("LUMNAR_MASTER_KEYS is not set: with DATABASE_URL or REDIS_URL every "
                        "machine must open the stored credentials with the same master keys "
                        "(never generated into one machine's data folder).")
    return problems


ENVIRONMENTS = ("production", "development")


def is_loopback(host: str | None) -> bool:
    """Whether `host` names this machine only: localhost, 127.0.0.0/8 or ::1."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def production_problems(cfg: dict) -> list[str]:
    """Settings that only suit a laptop, each said with why, when the app runs as production
    (anything but LUMNAR_ENV=development). The factory refuses to start when there are any:
    a forgotten variable on a server must stop the deploy, not open a hole."""
    env = cfg["ENV_NAME"]
    if env == "development":
        return []
    problems = []
    if env not in ENVIRONMENTS:
        problems.append(f"LUMNAR_ENV={env!r} is neither 'production' nor 'development'; "
                        "say which one is meant.")
    base_url = str(cfg["BASE_URL"])
    parts = urlsplit(base_url)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname)):
        problems.append(f"LUMNAR_BASE_URL={base_url} is not an https:// address (plain http is "
                        "only accepted on loopback): log-in cookies and the links in e-mails "
                        "would cross the network unencrypted.")
    if cfg["AUTOMATIONS_ALLOW_PRIVATE"]:
        problems.append("LUMNAR_AUTOMATIONS_ALLOW_PRIVATE is on: automations could reach this "
                        "server's private network, its loopback services and the cloud metadata "
                        "address. Set it to 0.")
    if cfg["DEV_OUTBOX"]:
        problems.append("the development outbox (DEV_OUTBOX) is on: it shows every e-mail, "
                        "with its password-reset and invitation links, on a web page. It only "
                        "exists with LUMNAR_ENV=development.")
    return problems
