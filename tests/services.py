"""Real PostgreSQL and Redis servers for the tests that need them (issue 22).

``.ci/run`` installs Debian's ``postgresql`` and ``redis-server``, starts both and exports
their URLs:

    AGENTRUN_TEST_POSTGRES   an admin URL (a role that may CREATE DATABASE), e.g.
                             postgresql://agentrun:agentrun@127.0.0.1:5432/postgres
    AGENTRUN_TEST_REDIS      redis://127.0.0.1:6379

Without them (a developer's machine), the session starts private servers from the installed
binaries in a temporary folder, on free ports, as the ``postgres`` user when run as root
(PostgreSQL refuses to run as root), and stops them at the end. Where neither is possible
the tests that need them are skipped, except under ``CI=true``, where that is a failure: CI
must run them.

Each test gets a database of its own (``postgres_url``, created from ``template0`` and
dropped after, connections and all) and a Redis database number of its own, flushed before
the test (``redis_url``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(what: str) -> None:
    message = f"{what}: set it, or install the server (see .ci/run)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the tests that need it: {message}")
    pytest.skip(message)


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextlib.contextmanager
def _private_postgres() -> Iterator[str | None]:
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        yield None
        return
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            yield None
            return
    folder = Path(tempfile.mkdtemp(prefix="agentrun-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    subprocess.run(
        _as_postgres_user(
            [initdb, "-D", str(data), "-U", "agentrun", "--auth=trust", "-E", "UTF8", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres_user(
            [pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://agentrun@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """An admin URL of a running PostgreSQL server (the role may create databases)."""
    url = os.environ.get("AGENTRUN_TEST_POSTGRES")
    if url:
        yield url
        return
    with _private_postgres() as started:
        if started is None:
            _unavailable("no PostgreSQL server: AGENTRUN_TEST_POSTGRES is not set")
        assert started is not None
        yield started


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The URL of an empty database of this test's own, dropped after the test."""
    import psycopg

    name = f"agentrun_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield _with_database(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _private_redis() -> Iterator[str | None]:
    server = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if server is None:
        yield None
        return
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="agentrun-redis-")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL of a running Redis server (no database number)."""
    url = os.environ.get("AGENTRUN_TEST_REDIS")
    if url:
        yield url.rstrip("/")
        return
    with _private_redis() as started:
        if started is None:
            _unavailable("no Redis server: AGENTRUN_TEST_REDIS is not set")
        assert started is not None
        yield started


_redis_numbers = iter(range(1, 1_000_000))


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """``redis://host:port/N``: a database number of this test's own (1-15), flushed first."""
    import redis

    number = 1 + next(_redis_numbers) % 15
    url = f"{redis_server}/{number}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
