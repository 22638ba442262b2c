"""End-to-end harness: the real server (uvicorn), the real Huey consumer, real SMTP, Chromium.

One server per test session, on a free port, with its own data directory. Tests drive it with
pytest-playwright's `page` / `context` / `new_context` fixtures; every context's `base_url` is
the live server, so `page.goto("/login")` works.
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.mailcatcher import MailCatcher, free_port, link_in

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin/ (uvicorn, huey_consumer, flask)
PASSWORD = "correct horse battery staple"
STARTUP_SECONDS = 30
STOP_SECONDS = 5
ACTION_TIMEOUT_MS = 10_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pause(seconds: float) -> None:
    """A short wait inside a deadline loop (the project keeps time.sleep out of tests)."""
    threading.Event().wait(seconds)


def wait_until(check, timeout: float, what: str, interval: float = 0.05):
    """Call `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause(interval)


class LiveServer:
    """uvicorn serving app.asgi:app, plus `huey_consumer jobs.main.huey`, on one data dir."""

    def __init__(self, data_dir: Path, smtp: MailCatcher):
        self.data_dir = data_dir
        self.smtp = smtp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUMNAR_")}
        env.update(
            LUMNAR_DATA_DIR=str(data_dir),
            LUMNAR_SECRET_KEY=secrets.token_urlsafe(32),
            LUMNAR_BASE_URL=self.url,
            LUMNAR_SMTP_URL=smtp.url,
            # Every browser test comes from 127.0.0.1, so per-IP limits (10 sign-ups an hour)
            # would fail the suite as it grows; the log-in lock-out is the app's own rule and
            # stays on.
            LUMNAR_RATELIMIT="0",
            PYTHONUNBUFFERED="1",
        )
        self.env = env

    def _run(self, name: str, *args: str) -> subprocess.Popen:
        log = self.data_dir / f"{name}.log"
        self.logs[name] = log
        with open(log, "wb") as fh:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]], cwd=ROOT, env=self.env,
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def boot(self) -> "LiveServer":
        """Migrate, then start uvicorn and the consumer, in a background thread."""
        self._boot_error = None

        def run():
            try:
                migrate = subprocess.run(
                    [str(BIN / "flask"), "--app", "app", "migrate"], cwd=ROOT, env=self.env,
                    capture_output=True, text=True, timeout=STARTUP_SECONDS, check=False,
                )
                if migrate.returncode != 0:
                    raise RuntimeError(f"flask migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
                self._run("web", "uvicorn", "app.asgi:app", "--host", "127.0.0.1",
                          "--port", str(self.port), "--timeout-graceful-shutdown", "2")
                # --max-delay: an idle consumer backs its polling off up to 10 s by default;
                # a test waiting for an e-mail should not wait that long.
                self._run("worker", "huey_consumer", "jobs.main.huey", "--workers", "2",
                          "--worker-type", "thread", "--max-delay", "0.2")
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                # handed to wait_ready(), which runs in the test's thread
                self._boot_error = exc

        self._booting = threading.Thread(target=run, name="live-server-boot", daemon=True)
        self._booting.start()
        return self

    def wait_ready(self) -> "LiveServer":
        """Block until /healthz answers 200 and the consumer runs; fail with the logs if not."""
        try:
            self._booting.join(STARTUP_SECONDS)
            if self._booting.is_alive():
                raise RuntimeError("migrations did not finish")
            if self._boot_error is not None:
                raise self._boot_error
            wait_until(self._healthy, STARTUP_SECONDS, f"{self.url}/healthz to answer 200")
            # The consumer logs this line once it runs.
            wait_until(lambda: self._alive() and "Huey consumer started" in self.log("worker"),
                       STARTUP_SECONDS, "the Huey consumer to start")
        except (AssertionError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
            self.stop()
            raise RuntimeError(f"live server did not start: {exc}\n{self.all_logs()}") from None
        return self

    def _alive(self) -> bool:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"process exited early: {dead}")
        return True

    def _healthy(self) -> bool:
        self._alive()
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def check(self) -> None:
        """Fail when uvicorn or the consumer has died."""
        self._alive()

    def stop(self) -> None:
        booting = getattr(self, "_booting", None)
        if booting is not None:
            booting.join(STARTUP_SECONDS)  # never leave a process it is about to start
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: children go too
                proc.wait(timeout=STOP_SECONDS)

    def log(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def all_logs(self, tail: int = 200) -> str:
        parts = []
        for name in self.logs:
            lines = self.log(name).splitlines()[-tail:]
            parts.append(f"----- {name} log (last {len(lines)} lines) -----\n" + "\n".join(lines))
        return "\n".join(parts)

    # --- mail ------------------------------------------------------------------------------

    def wait_for_mail(self, address: str, subject_part: str = "", timeout: float = 15.0):
        """The newest e-mail to `address` (subject containing `subject_part`) at the catcher."""

        def found():
            self._alive()
            matches = [m for m in self.smtp.to(address) if subject_part in m["Subject"]]
            return matches[-1] if matches else None

        return wait_until(found, timeout, f"an e-mail to {address} with {subject_part!r}")


@pytest.fixture(scope="session", autouse=True)
def _live_server_booting(tmp_path_factory):
    """Starts booting the server as the e2e session begins (autouse fixtures come first), so
    migrations and the two processes' imports overlap Playwright's and Chromium's start-up."""
    smtp = MailCatcher().start()
    server = LiveServer(tmp_path_factory.mktemp("lumnar-e2e"), smtp)
    try:
        yield server.boot()
    finally:
        server.stop()
        smtp.stop()


@pytest.fixture(scope="session")
def live_server(_live_server_booting):
    """The running server (see LiveServer): url, port, smtp, wait_for_mail(), logs."""
    return _live_server_booting.wait_ready()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # A failing browser test shows what the server and the worker said.
    report = yield
    server = getattr(item, "funcargs", {}).get("live_server")
    if report.failed and isinstance(server, LiveServer):
        report.sections.append(("live server logs", server.all_logs()))
    return report


# --- browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """The system Chromium (LUMNAR_CHROMIUM or /usr/bin/chromium), else Playwright's own."""
    args = dict(browser_type_launch_args)
    executable = os.environ.get("LUMNAR_CHROMIUM") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium"))
    if executable:
        args["executable_path"] = executable
        args["args"] = [*args.get("args", []), *CHROMIUM_ARGS]
    return args


@pytest.fixture(scope="session")
def base_url(live_server):
    """Every context's base_url (pytest-playwright reads it in browser_context_args).

    Defining it here also replaces pytest-playwright's fallback `base_url`, a session fixture
    written as an instance method, which pytest 9 warns about (an error under our
    filterwarnings = ["error"]).
    """
    return live_server.url


@pytest.fixture
def new_context(new_context):
    """pytest-playwright's factory, with a 10 s action timeout instead of 30 s: on this
    loopback setup nothing legitimate takes that long, and a broken page fails sooner."""

    def make(**kwargs):
        ctx = new_context(**kwargs)
        ctx.set_default_timeout(ACTION_TIMEOUT_MS)
        return ctx

    return make


@pytest.fixture(autouse=True)
def _server_still_running(request):
    """After each test: fail it if uvicorn or the consumer died meanwhile."""
    yield
    server = request.node.funcargs.get("live_server")
    if server is not None:
        server.check()


# --- people ----------------------------------------------------------------------------------


def unique_email(label: str = "user") -> str:
    return f"{label}-{secrets.token_hex(4)}@example.com"


def sign_up(page, name: str, email: str, password: str = PASSWORD) -> None:
    page.goto("/signup")
    page.get_by_label("Your name", exact=True).fill(name)
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password (at least 10 characters)").fill(password)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("E-mail", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard/inbox")


@pytest.fixture
def verified_user(live_server, new_context):
    """A new account, signed up in a browser and confirmed through its e-mailed link."""

    def make(label: str = "user", name: str = "Olive Owner") -> str:
        email = unique_email(label)
        ctx = new_context()
        page = ctx.new_page()
        sign_up(page, name, email)
        msg = live_server.wait_for_mail(email, "Confirm your e-mail")
        page.goto(link_in(msg))
        page.wait_for_url("**/login")
        ctx.close()
        return email

    return make
