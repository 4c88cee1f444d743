"""Where a study lives: a storage URL, the Optuna storage behind it, and the lock that
makes claiming a trial atomic across every worker sharing that storage.

URLs:
- a file path (default: reports/studies/NAME.journal): Optuna's journal file. Chosen over
  SQLite as the local default because it is an append-only log of one fsync'ed line per
  operation: a worker SIGKILLed at any moment leaves at most an operation unwritten, never
  a half-updated database, and several local processes append to it without SQLite's
  "database is locked" errors (Optuna recommends it for local parallel runs).
- postgresql://... (or postgresql+psycopg://...): a shared server, for any number of
  workers on any number of machines. psycopg 3 is the driver.
- sqlite:///PATH: accepted for single-machine use.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DIR = Path("reports") / "studies"
_RDB_SCHEMES = ("postgresql", "postgresql+psycopg", "sqlite")


class StorageURLError(ValueError):
    """A --storage value that names no storage mixlab can use."""


def default_url(study_name: str) -> str:
    """The storage a study uses when no --storage is given (relative to the working dir)."""
    return str(DEFAULT_DIR / f"{study_name}.journal")


def normalize_url(url: str) -> str:
    """Check a storage URL without touching it; raises StorageURLError naming --storage.

    postgresql:// becomes postgresql+psycopg:// (SQLAlchemy would default to psycopg2,
    which is not installed).
    """
    if not url:
        raise StorageURLError("--storage: empty URL")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a journal file path
    if scheme not in _RDB_SCHEMES:
        raise StorageURLError(
            f"--storage: unsupported URL scheme {scheme!r} "
            "(use a file path, postgresql://..., or sqlite:///PATH)"
        )
    if scheme == "postgresql":
        return f"postgresql+psycopg://{rest}"
    return url


def mask_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def open_storage(url: str, create: bool = False):
    """The Optuna storage behind `url`. Unless `create`, a local file that does not exist
    is an error and a database gets no tables: reading a study leaves nothing behind."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    url = normalize_url(url)
    path = _local_file(url)
    if path is not None and not path.exists():
        if not create:
            raise FileNotFoundError(f"--storage: no study storage at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
    if "://" not in url:
        return JournalStorage(JournalFileBackend(url, lock_obj=FileLock(f"{url}.lock")))
    if not create and not path and not _has_optuna_tables(url):
        # Optuna would create its version tables even for a reader, racing a worker
        # that creates the schema at the same moment.
        raise FileNotFoundError(f"--storage: no study storage at {mask_password(url)}")
    if url.startswith("sqlite"):
        # Wait for a busy database instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        # A worker talks to the server from one thread (plus its heartbeat): a small pool
        # keeps many workers on many machines within the server's max_connections.
        engine_kwargs = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
    return optuna.storages.RDBStorage(
        url, engine_kwargs=engine_kwargs, skip_table_creation=not create
    )


def _has_optuna_tables(url: str) -> bool:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        # alembic_version is the last table Optuna creates, in the same transaction as
        # its version stamp.
        return sqlalchemy.inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


def _local_file(url: str) -> Path | None:
    if "://" not in url:
        return Path(url)
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


class FileLock:
    """An exclusive flock(2) on a side file. The kernel drops it when its holder dies, so a
    worker SIGKILLed while holding it cannot block the others (Optuna's own journal locks
    are files that a dead holder leaves behind until a 30 s grace period forcibly breaks
    them). Works as a journal lock (acquire/release) and as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def claim_lock(url: str, study_name: str) -> Iterator[None]:
    """Held while a worker reads the trials and creates the one it claims, so that no two
    workers sharing `url` can claim the same grid point. A file lock next to a local
    storage; a PostgreSQL session advisory lock on a server (released by the server when
    the holder's connection drops, so a killed worker cannot keep it)."""
    url = normalize_url(url)
    path = _local_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.claim"):
            yield
        return
    import sqlalchemy

    # pg_advisory_lock takes a signed bigint; one key per study name.
    digest = hashlib.sha256(f"mixlab:{study_name}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()
