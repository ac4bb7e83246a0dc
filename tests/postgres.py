"""A real, throwaway PostgreSQL server for the tests: Debian's `postgresql` package (installed through apt when
missing and we are root), a cluster made by initdb in a temporary folder, served by the unprivileged `postgres`
user on a free port of 127.0.0.1 with trust authentication, and removed at the end of the session."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DEBIAN_PACKAGES = ("postgresql",)
VERSIONS_ROOT = Path("/usr/lib/postgresql")  # Debian puts each major version's initdb/pg_ctl in VERSION/bin
BIN_GLOB = f"{VERSIONS_ROOT}/*/bin"  # (not on PATH)
TOOLS = ("initdb", "pg_ctl", "createdb")
SERVER_USER = "postgres"  # the package's own user; the server refuses to run as root
START_SECONDS = 30  # pg_ctl -w waits (bounded) until the server accepts connections
SUPERUSER = "postgres"
MEMORY_FOLDER = Path("/dev/shm")  # a memory filesystem: a throwaway cluster writes (and deletes) no disk
MEMORY_NEEDED = 1 << 30


def _bin_dirs() -> list[Path]:
    """Debian's PostgreSQL bin folders that have the tools, newest major version first."""
    found = [path for path in VERSIONS_ROOT.glob("*/bin") if all((path / tool).is_file() for tool in TOOLS)]
    return sorted(found, key=lambda path: int(re.sub(r"\D", "", path.parent.name) or 0), reverse=True)


def apt_install(*packages: str) -> None:
    """Install Debian packages (needs root and apt-get); RuntimeError with the reason when that cannot be done."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"needs root and apt-get: apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")


def find_or_install_postgres() -> Path:
    """The bin folder of Debian's PostgreSQL; installs the package when it is missing (root and apt-get needed).
    Raises RuntimeError with the reason when that cannot be done."""
    if not _bin_dirs():
        try:
            apt_install(*DEBIAN_PACKAGES)
        except RuntimeError as exc:
            raise RuntimeError(f"PostgreSQL is not installed under {BIN_GLOB} and cannot be ({exc})") from None
    dirs = _bin_dirs()
    if not dirs:
        raise RuntimeError(f"apt-get installed {' '.join(DEBIAN_PACKAGES)}, yet {BIN_GLOB} has no {', '.join(TOOLS)}")
    return dirs[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """One running cluster: its tools, its folder (data, log, socket) and its port on 127.0.0.1."""

    bin_dir: Path
    folder: Path
    port: int = 0

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL tool run as the server's user (`runuser` when we are root); its failure raises."""
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-800:] if log.is_file() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()[-800:]}\n{tail}")
        return done

    def start(self, attempts: int = 3) -> None:
        """initdb (trust auth, no fsync) and start on a free port, waiting until it accepts connections."""
        self._run("initdb", "-D", "data", "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(attempts):  # a free port can be taken between the probe and the server's bind
            self.port = _free_port()
            options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F -c max_connections=50"
            try:
                self._run("pg_ctl", "-D", "data", "-l", "server.log", "-o", options, "-w", "-t", str(START_SECONDS),
                          "start", timeout=START_SECONDS + 10)
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL (`postgresql://postgres@127.0.0.1:PORT/NAME`)."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.url(name)

    def url(self, database: str) -> str:
        """The URL of one of its databases, as `--storage` takes it."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Fast shutdown (open sessions are ended), then the folder is removed."""
        try:
            if (self.folder / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", "data", "-m", "fast", "-w", "-t", str(START_SECONDS), "stop",
                          timeout=START_SECONDS + 10)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _scratch_root() -> str | None:
    """/dev/shm when it is a roomy memory filesystem, else None (the system's temporary folder)."""
    try:
        roomy = shutil.disk_usage(MEMORY_FOLDER).free > MEMORY_NEEDED and os.access(MEMORY_FOLDER, os.W_OK)
    except OSError:
        return None
    return str(MEMORY_FOLDER) if roomy else None


def start_postgres() -> PostgresServer:
    """A fresh cluster in a new folder owned by the server's user, in memory where it can be (the pytest tmp
    folders are root's private ones, which that user cannot enter)."""
    bin_dir = find_or_install_postgres()
    folder = Path(tempfile.mkdtemp(prefix="imgcls-postgres-", dir=_scratch_root()))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
    server = PostgresServer(bin_dir, folder)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (skipped, with the reason, only where it cannot be had)."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is in the dev extra: pip install -e '.[dev]'")
    try:
        server = start_postgres()
    except RuntimeError as exc:
        if _bin_dirs() or os.geteuid() == 0:
            raise  # installed, or installable: a failure to start is a failure, never a skip
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """The URL of a new empty database on the session's server, one per test."""
    name = re.sub(r"\W", "_", request.node.name.lower())[:50]
    return postgres_server.create_database(name)
