"""Where a study lives: a storage URL, the Optuna storage behind it, and the lock under which
a study is created and its points enqueued, once, however many workers share the storage.

URLs:
- a file path (default: reports/studies/NAME.journal): Optuna's journal file. Chosen over
  SQLite as the local default because it is an append-only log of one fsync'ed line per
  operation: a worker SIGKILLed at any moment leaves at most an operation unwritten, never
  a half-updated database, and several local processes append to it without SQLite's
  "database is locked" errors (Optuna recommends it for local parallel runs).
- postgresql://... (or postgresql+psycopg://...): a shared server, for any number of
  workers on any number of machines. psycopg 3 is the driver.
- sqlite:///PATH: accepted for single-machine use (transactional: a full disk or a kill
  leaves the last committed state).

A server that does not answer is given CONNECT_TIMEOUT_S to connect (libpq's
connect_timeout; a `?connect_timeout=N` in the URL overrides it). Whatever keeps a storage
from being opened or written is a StorageError whose one-line message names --storage,
the URL (password masked) and the cause.
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
CONNECT_TIMEOUT_S = 10


class StorageURLError(ValueError):
    """A --storage value that names no storage mixlab can use."""


class StorageError(RuntimeError):
    """A storage that cannot be opened, reached or written (see the module docstring)."""


def storage_error(url: str, err: BaseException) -> StorageError:
    """`err` as one line naming --storage and the masked URL."""
    cause = err
    # Optuna's StorageInternalError wraps SQLAlchemy's error, which wraps the driver's:
    # the innermost says what happened ("database or disk is full").
    while getattr(cause, "orig", None) or cause.__cause__:
        cause = getattr(cause, "orig", None) or cause.__cause__
    text = " ".join(str(cause).split()) or type(cause).__name__
    password = urlsplit(url).password if "://" in url else None
    if password:
        text = text.replace(password, "***")
    return StorageError(f"--storage {mask_password(url)}: {text}")


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


def open_storage(url: str, create: bool = False, heartbeat: dict | None = None):
    """The Optuna storage behind `url`. Unless `create`, a local file that does not exist
    is an error and a database gets no tables: reading a study leaves nothing behind.
    `heartbeat`: RDBStorage's liveness arguments (liveness.rdb_heartbeat), for a worker; a
    journal has none (mixlab.studies.liveness).
    Raises StorageURLError / StorageError (one line naming --storage), FileNotFoundError."""
    import optuna
    from optuna.storages.journal import JournalStorage

    from mixlab.studies.liveness import quiet_experimental

    url = normalize_url(url)
    path = _local_file(url)
    if path is not None and path.is_dir():
        raise StorageURLError(f"--storage: {path} is a folder; give a file path in it")
    if path is not None and not path.exists() and not create:
        raise FileNotFoundError(f"--storage: no study storage at {path}")
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if "://" not in url:
            from mixlab.studies import journal

            return JournalStorage(journal.Backend(url, lock_obj=FileLock(f"{url}.lock")))
        # Optuna would create its version tables even for a reader, racing a worker that
        # creates the schema at the same moment.
        if create or path or _has_optuna_tables(url):
            with quiet_experimental():
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=_engine_kwargs(url),
                    skip_table_creation=not create,
                    **(heartbeat or {}),
                )
    except StorageError:
        raise
    except Exception as err:
        # OSError (a path under /proc, no permission), a journal damaged in the middle
        # (ValueError from Optuna's replay), a server that refuses or does not answer.
        raise storage_error(url, err) from None
    raise FileNotFoundError(f"--storage: no study storage at {mask_password(url)}")


def _engine_kwargs(url: str, pooled: bool = True) -> dict:
    if url.startswith("sqlite"):
        # Wait for a busy database instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    kwargs: dict = {}
    if "connect_timeout" not in urlsplit(url).query:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if pooled:
        # A worker talks to the server from one thread (plus its heartbeat): a small pool
        # keeps many workers on many machines within the server's max_connections.
        kwargs.update(pool_size=2, max_overflow=2, pool_pre_ping=True)
    return kwargs


def _unpooled_engine(url: str):
    import sqlalchemy

    kwargs = _engine_kwargs(url, pooled=False)
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **kwargs)


def _has_optuna_tables(url: str) -> bool:
    import sqlalchemy

    engine = _unpooled_engine(url)
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
    process SIGKILLed while holding it cannot block the others (Optuna's own journal locks
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
def enqueue_lock(url: str, study_name: str) -> Iterator[None]:
    """Held while a study is created or its open points enqueued (mixlab.studies.queue), so
    that workers sharing `url` enqueue a point once. Claims need no lock (Optuna's ask()). A
    file lock next to a local storage; a PostgreSQL session advisory lock on a server
    (released by the server when the holder's connection drops, so a killed worker cannot
    keep it)."""
    url = normalize_url(url)
    path = _local_file(url)
    if path is not None:
        lock = FileLock(f"{path}.enqueue")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except OSError as err:
            raise storage_error(url, err) from None
        try:
            yield
        finally:
            lock.release()
        return
    import sqlalchemy

    # pg_advisory_lock takes a signed bigint; one key per study name.
    digest = hashlib.sha256(f"mixlab:{study_name}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    engine = _unpooled_engine(url)
    try:
        try:
            connection = engine.connect()
        except sqlalchemy.exc.SQLAlchemyError as err:
            raise storage_error(url, err) from None
        with connection as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()


@contextmanager
def errors_named(url: str) -> Iterator[None]:
    """Inside: a database error surfacing from Optuna mid-run becomes a StorageError."""
    import optuna
    import sqlalchemy

    try:
        yield
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as err:
        raise storage_error(url, err) from err


def recover_journal(url: str) -> str | None:
    """For a journal file: cut a torn or corrupt tail back to its intact prefix (the damaged
    file kept aside, mixlab.studies.journal.recover); returns what it did, or None."""
    url = normalize_url(url)
    if "://" in url or not Path(url).is_file():
        return None
    from mixlab.studies import journal

    try:
        with FileLock(f"{url}.lock"):
            return journal.recover(url)
    except OSError as err:
        raise storage_error(url, err) from None
