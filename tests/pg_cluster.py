"""A throwaway PostgreSQL server for the integration tests.

`pg_cluster()` runs initdb in a temporary folder, starts the server on a free loopback
port (127.0.0.1 only, trust authentication, no fsync: nothing here must outlive the test),
creates a database, yields its SQLAlchemy URL (postgresql+psycopg://...), and stops the
server and removes the folder at the end. The server binaries come from the `postgresql`
system package (the Makefile's system-deps installs it); when they are missing the test
fails naming the missing program: it never skips.

initdb refuses to run as root, so under root the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

DATABASE = "mixlab_test"
USER = "mixlab"


def server_program(name: str) -> str:
    """Path of a PostgreSQL server program (initdb, pg_ctl), or a failed test naming it."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if found is None:
        pytest.fail(
            f"PostgreSQL server program {name!r} not found (looked in "
            f"/usr/lib/postgresql/*/bin and PATH): install the postgresql package "
            "(`make system-deps` does as root)",
            pytrace=False,
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def pg_cluster() -> Iterator[str]:
    initdb, pg_ctl = server_program("initdb"), server_program("pg_ctl")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="mixlab-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs the 'postgres' user to run the server")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {root} -F -c max_connections=100"
    try:
        try:
            _run([*as_user, initdb, "-D", str(data), "-U", USER, "-A", "trust", "--no-sync"])
            _run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"])
        except subprocess.CalledProcessError as err:
            server_log = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"PostgreSQL did not start: {err}\n{err.stderr}\n{server_log}")
        try:
            _create_database(port)
            yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)


def _create_database(port: int) -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user=USER, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
