"""Throwaway PostgreSQL and Redis servers for the tests: real servers, started in a temporary
folder, listening on a unix socket (PostgreSQL) or a free loopback port (Redis), gone when the
test session ends. No fakes: what runs against them is what runs in production.

PostgreSQL refuses to run as root; under root (CI, containers) the cluster is made and run as
the `postgres` system user that Debian's package creates.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path


class ServerMissing(RuntimeError):
    pass


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps it off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServerMissing("PostgreSQL is not installed (make test installs Debian's postgresql)")


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Postgres:
    """One cluster; `url(name)` names a database in it (made by `create(name)`)."""

    def __init__(self):
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="lumnar-pg-"))
        self.data, self.socket_dir = self.root / "data", self.root / "run"
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "lumnar")
        self.port = free_port()
        self._admin = None

    def start(self) -> "Postgres":
        run = _as_server_user()
        subprocess.run([*run, str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"],
                       check=True, capture_output=True)
        # Durability off and a small footprint: a test cluster lives minutes.
        options = (f"-k {self.socket_dir} -p {self.port} -h '' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c shared_buffers=64MB")
        subprocess.run([*run, str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                        "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"],
                       check=True, capture_output=True)
        return self

    def url(self, name: str) -> str:
        return f"postgresql://{self.user}@/{name}?host={self.socket_dir}&port={self.port}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        out = subprocess.run([str(self.bin / "psql"), "-h", str(self.socket_dir), "-p",
                              str(self.port), "-U", self.user, "-d", database, "-v",
                              "ON_ERROR_STOP=1", "-Atc", statement],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def admin(self):
        """A kept connection for creating and dropping databases (a psql per test cost more
        than the test)."""
        if self._admin is None or self._admin.closed:
            import psycopg

            self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        return self._admin

    def create(self, name: str, template: str | None = None) -> str:
        # FILE_COPY copies the template's files as they are: 20 ms, against 160 ms for the
        # default strategy, which writes the whole copy to the WAL (measured here).
        copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        self.admin().execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop(self, name: str) -> None:
        self.admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        subprocess.run([*_as_server_user(), str(self.bin / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    def __init__(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerMissing("redis-server is not installed (make test installs it)")
        self.binary, self.port = binary, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lumnar-redis-"))
        self.process = self.drain = None

    def start(self) -> "Redis":
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Ready when it says so (its log line), not after a guessed wait; a server that dies
        # first ends its output, and that is the failure.
        said = []
        for line in self.process.stdout:
            said.append(line)
            if "Ready to accept connections" in line:
                # Its later log lines are read and dropped, so that a full pipe never stops it.
                self.drain = threading.Thread(target=self.process.stdout.read, daemon=True)
                self.drain.start()
                return self
        self.stop()
        raise RuntimeError("redis-server did not start:\n" + "".join(said[-10:]))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.drain is not None:
                self.drain.join(5)  # its read ends with the server's output
            self.process.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
