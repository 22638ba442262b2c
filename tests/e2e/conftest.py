"""End-to-end harness: the real server (uvicorn), the real Huey consumer, real SMTP, Chromium.

One server per test session, on a free port, with its own data directory. Tests drive it with
pytest-playwright's `page` / `context` / `new_context` fixtures; every context's `base_url` is
the live server, so `page.goto("/login")` works.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.mailcatcher import MailCatcher, free_port, link_in

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin/ (uvicorn, huey_consumer, flask)
PASSWORD = "correct horse battery staple"
STARTUP_SECONDS = 90  # a bound, not a goal: a loaded machine may take long
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

    def __init__(self, data_dir: Path, smtp: MailCatcher, shared: dict | None = None):
        self.data_dir = data_dir
        self.smtp = smtp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUMNAR_")}
        env.update(
            # Said explicitly: unset means production, which refuses the loopback automations
            # below and has no outbox page or demo shop.
            LUMNAR_ENV="development",
            LUMNAR_DATA_DIR=str(data_dir),
            LUMNAR_SECRET_KEY=secrets.token_urlsafe(32),
            LUMNAR_BASE_URL=self.url,
            LUMNAR_SMTP_URL=smtp.url,
            # Every browser test comes from 127.0.0.1, so per-IP limits (10 sign-ups an hour)
            # would fail the suite as it grows; the log-in lock-out is the app's own rule and
            # stays on.
            LUMNAR_RATELIMIT="0",
            # Automation tests call HTTP servers on loopback, and retry a second apart.
            LUMNAR_AUTOMATIONS_ALLOW_PRIVATE="1",
            LUMNAR_AUTOMATIONS_RETRY_BASE_SECONDS="1",
            PYTHONUNBUFFERED="1",
        )
        # `pytest --engine=postgres`: the same server on PostgreSQL + Redis (DATABASE_URL,
        # REDIS_URL and the keys a shared set-up must be given).
        env.update(shared or {})
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
                # The demo account and its "Demo shop" site (what `flask demo` makes on an
                # empty database), so that /demo/shop exists; it runs while the two
                # processes above import.
                demo = subprocess.run(
                    [str(BIN / "flask"), "--app", "app", "demo"], cwd=ROOT, env=self.env,
                    capture_output=True, text=True, timeout=STARTUP_SECONDS, check=False,
                )
                if demo.returncode != 0 or "demo login:" not in demo.stdout:
                    raise RuntimeError(f"flask demo failed:\n{demo.stdout}\n{demo.stderr}")
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

    def _healthy(self, url: str | None = None) -> bool:
        self._alive()
        try:
            return httpx.get(f"{url or self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def start_web(self, name: str) -> str:
        """Another uvicorn process on the same database, with the same environment (data dir,
        secret key, base URL), on a port of its own: its URL. Stop it with stop_process()."""
        port = free_port()
        self._run(name, "uvicorn", "app.asgi:app", "--host", "127.0.0.1", "--port", str(port),
                  "--timeout-graceful-shutdown", "2")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: self._healthy(url), STARTUP_SECONDS, f"{url}/healthz to answer 200")
        except (AssertionError, RuntimeError) as exc:
            self.stop_process(name)
            raise RuntimeError(f"{name} did not start: {exc}\n{self.all_logs()}") from None
        return url

    def stop_process(self, name: str) -> None:
        """Stop one process started by start_web(); its log stays in the failure reports."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_SECONDS)

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

    def rows(self, query: str, params=()) -> list:
        """What `query` (written with ? placeholders) finds in the live server's database,
        on a connection of the test's own: for what no page shows (a stream's presence)."""
        url = self.env.get("DATABASE_URL")
        if url:
            import psycopg

            with psycopg.connect(url) as db:
                return db.execute(query.replace("?", "%s"), params).fetchall()
        db = sqlite3.connect(self.data_dir / "lumnar.db")
        try:
            return db.execute(query, params).fetchall()
        finally:
            db.close()

    def wait_for_mail(self, address: str, subject_part: str = "", timeout: float = 15.0):
        """The newest e-mail to `address` (subject containing `subject_part`) at the catcher."""

        def found():
            self._alive()
            matches = [m for m in self.smtp.to(address) if subject_part in m["Subject"]]
            return matches[-1] if matches else None

        return wait_until(found, timeout, f"an e-mail to {address} with {subject_part!r}")


@pytest.fixture(scope="session", autouse=True)
def _live_server_booting(tmp_path_factory, request):
    """Starts booting the server as the e2e session begins (autouse fixtures come first), so
    migrations and the two processes' imports overlap Playwright's and Chromium's start-up.
    On the PostgreSQL pass it runs on a database of its own in the throwaway cluster, with
    the throwaway Redis."""
    shared = None
    if request.config.getoption("--engine") == "postgres":
        from tests.conftest import TEST_MASTER_KEY

        postgres = request.getfixturevalue("postgres")
        redis = request.getfixturevalue("redis_server")
        # A Redis database of its own too: its worker must not take the other tests' tasks.
        shared = {"DATABASE_URL": postgres.create("lumnar_e2e"),
                  "REDIS_URL": redis.url.rsplit("/", 1)[0] + "/1",
                  "LUMNAR_MASTER_KEYS": TEST_MASTER_KEY}
    smtp = MailCatcher().start()
    server = LiveServer(tmp_path_factory.mktemp("lumnar-e2e"), smtp, shared)
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


def confirmed_user_over_http(live_server, label: str = "user", name: str = "Olive Owner") -> str:
    """A new confirmed account made without a browser (sign-up form, e-mailed link): its e-mail."""
    email = unique_email(label)
    with HttpUser(live_server.url) as http:
        http.post_form("/signup", "/signup", name=name, email=email, password=PASSWORD)
        assert "Check your inbox" in http.last.text, http.last.text[:2000]
        link = link_in(live_server.wait_for_mail(email, "Confirm your e-mail"))
        http.get(link)
    return email


class HttpUser:
    """A person's cookies over plain HTTP (httpx), for tests that need no browser: posts forms
    with the CSRF token the page they come from carries, as a browser without JavaScript does."""

    CSRF = re.compile(r'"X-CSRFToken": "([^"]+)"')

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=10, follow_redirects=True)
        self.last = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.http.close()

    def get(self, url: str, **kwargs) -> httpx.Response:
        self.last = self.http.get(url, **kwargs)
        return self.last

    def post_form(self, page: str, url: str, **fields) -> httpx.Response:
        """GET `page` for its CSRF token, then post `fields` to `url` (following redirects)."""
        token = self.CSRF.search(self.get(page).text).group(1)
        self.last = self.http.post(url, data={"csrf_token": token, **fields})
        return self.last

    def log_in(self, email: str, password: str = PASSWORD) -> None:
        self.post_form("/login", "/login", email=email, password=password)
        assert self.last.url.path == "/dashboard/inbox", (self.last.url, self.last.text[:2000])

    def create_site(self, name: str, origins: list[str]) -> tuple[int, str]:
        """Posts the "Add a site" form: (site id, site key from the snippet)."""
        self.post_form("/dashboard/sites", "/dashboard/sites", name=name,
                       allowed_origins="\n".join(origins), greeting="Hello from the test shop",
                       away_message="We are away; leave your e-mail.", accent_color="#4338ca",
                       retention_days="30", enabled="y")
        found = re.fullmatch(r"/dashboard/sites/(\d+)", self.last.url.path)
        assert found, (self.last.url, self.last.text[:2000])
        key = re.search(r'data-site=(?:&#34;|&quot;|")([\w-]+)', self.last.text).group(1)
        return int(found.group(1)), key


# --- a customer's website on other origins ------------------------------------------------------


def snippet_page(snippet: str, title: str = "Test shop") -> str:
    """A customer's page with the chat snippet pasted before </body>, as the site page says."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<link rel="icon" href="data:,"></head><body><main><h1>{title}</h1>'
            f"<p>Mugs, tea towels and candles.</p></main>{snippet}</body></html>")


class HostSite:
    """A customer's website: a threaded http.server in this process, serving the pages given to
    add() on its own origin. Lumnar runs on http://127.0.0.1:<port>; this one is
    http://localhost:<other port>: another origin, and another *site* too, so the chat frame
    is a third-party frame there, as on a real shop."""

    def __init__(self, hostname: str = "localhost"):
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body = pages.get(self.path.split("?", 1)[0])
                data = (body or "Not found").encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass  # quiet: pytest shows nothing of a passing run anyway

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://{hostname}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="host-site",
                                       daemon=True)

    def start(self) -> "HostSite":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, path: str, html: str) -> str:
        """Serve `html` at `path`; returns the page's absolute URL."""
        self.pages[path] = html
        return self.origin + path


@pytest.fixture(scope="session")
def host_site():
    """A customer's website on another origin than Lumnar's (see HostSite)."""
    site = HostSite().start()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def evil_site():
    """A third origin, never in any site's allowed origins."""
    site = HostSite().start()
    yield site
    site.stop()


def watch_csp(page) -> list[str]:
    """Console messages about Content Security Policy on this page and in its frames
    (Chromium reports the chat iframe's console on its page too), as they come."""
    seen = []
    page.on("console", lambda msg: seen.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    return seen


class FlakyLink:
    """A TCP relay from a port of its own to the live server: a visitor's network that a test
    can cut. cut() closes every connection through it (an open SSE stream ends with the
    connection, as when a phone loses its signal) and refuses new ones until restore().

    Needed because Playwright's context.set_offline(True) only fails *new* requests in
    Chromium: an EventSource that is already open keeps receiving events (checked with
    Chromium 156), so it cannot show what a stream misses while it is down.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = True
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.thread = threading.Thread(target=self._accept, name="flaky-link", daemon=True)

    def start(self) -> "FlakyLink":
        self.thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stop() closed the listener
            with self.lock:
                if not self.up:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                self.sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        with self.lock:
            for sock in socks:
                self.sockets.discard(sock)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def cut(self) -> None:
        with self.lock:
            self.up = False
            live = list(self.sockets)
        self._close(*live)

    def restore(self) -> None:
        with self.lock:
            self.up = True

    def stop(self) -> None:
        self.cut()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() alone may not)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(STOP_SECONDS)


@pytest.fixture
def flaky_link(live_server):
    """A cuttable network path to the live server (see FlakyLink); its .url replaces the
    server's URL in what the visitor loads."""
    link = FlakyLink(live_server.port).start()
    yield link
    link.stop()
