"""The local study storage: Optuna's journal file, kept readable through a full disk and a
kill in the middle of a write.

Optuna's JournalFileBackend appends one JSON line per operation. A write cut short (a full
disk, a SIGKILL between write and fsync) leaves a half line at the end; Optuna's reader
skips an unterminated last line, but the next append lands right after it and from then on
the file is a JSONDecodeError for every reader. Two defences:

- `Backend.append_logs` truncates the file back to where it was when a write fails, and
  raises JournalWriteError (the run stops with a message; the journal stays whole).
- `recover(path)`, run by `mixlab ablate` before it opens a journal, keeps the longest
  prefix of whole, parseable lines. A damaged file is first hard-linked aside
  (NAME.journal.damaged-N, never overwritten), then the prefix replaces it atomically.
  Only a prefix is kept: the operations after a damaged one refer to trials by their
  order, so replaying them without it could attach results to the wrong trial.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from optuna.storages.journal import JournalFileBackend

from mixlab.studies.storage import StorageError


class JournalWriteError(StorageError):
    """A journal append that did not reach the disk; the journal is as it was before it."""


class Backend(JournalFileBackend):
    def append_logs(self, logs: list[dict]) -> None:
        # Optuna's append_logs, plus the truncation on failure it lacks.
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with self._lock:  # storage.FileLock
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            try:
                size = os.fstat(fd).st_size
                try:
                    _write_all(fd, text.encode("utf-8"))
                    os.fsync(fd)
                except OSError as err:
                    os.ftruncate(fd, size)  # frees blocks: works on a full disk
                    raise JournalWriteError(
                        f"--storage: cannot write to the study journal {self._file_path} "
                        f"({err.strerror}); it keeps every operation before this one: "
                        "free space and run the same command again",
                    ) from err
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def intact_length(path: Path) -> tuple[int, int, int]:
    """(bytes, lines) of the longest prefix of whole JSON lines, and the file's size."""
    kept = lines = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                json.loads(line)
            except ValueError:
                break
            kept += len(line)
            lines += 1
        size = os.fstat(f.fileno()).st_size
    return kept, lines, size


def recover(path: str | Path) -> str | None:
    """Cut a damaged journal back to its intact prefix (see the module docstring); returns
    a message saying what was dropped and where the damaged file is, or None when whole.
    The caller holds the journal's lock."""
    path = Path(path)
    if not path.is_file():
        return None
    kept, lines, size = intact_length(path)
    if kept == size:
        return None
    with open(path, "rb") as f:
        prefix = f.read(kept)
        dropped = f.read()
    aside = _link_aside(path)
    tmp = path.with_name(f".{path.name}.recovering")
    with open(tmp, "wb") as f:
        f.write(prefix)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    whole = dropped.count(b"\n")
    partial = "" if dropped.endswith(b"\n") else " and a half-written one"
    return (
        f"{path}: the journal was damaged after its first {lines} operations; kept those, "
        f"dropped {whole} line(s){partial} ({len(dropped)} bytes). Trials they recorded run "
        f"again. The damaged file is kept at {aside}"
    )


def _link_aside(path: Path) -> Path:
    for n in range(1, 10_000):
        aside = path.with_name(f"{path.name}.damaged-{n}")
        try:
            os.link(path, aside)  # fails if it exists: an earlier damaged copy stays
        except FileExistsError:
            continue
        return aside
    raise JournalWriteError(f"{path}: too many damaged copies beside it; remove some")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
