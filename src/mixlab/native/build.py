"""Compile mixlab's C sources into one shared library, cache it, and load only a library
this user built.

The cache ($MIXLAB_CACHE_DIR, else $XDG_CACHE_HOME/mixlab, else ~/.cache/mixlab) holds
`mixlab_native_KEY.so`, KEY a hash of the sources, the flags, the compiler and what
-march=native means on this CPU (so a cached library never runs on a CPU that lacks the
instructions it was built for), and beside it `mixlab_native_KEY.so.sha256`: the hash of
the library's bytes, written by the build that made it.

A shared library runs code when it is loaded, so the name alone (predictable) is never
trusted. Before loading:
- the cache folder must be owned by this user and writable by nobody else; a new one is
  created 0700;
- the library and its hash file must be owned by this user and writable by nobody else;
- the library's bytes must hash to what its hash file says.
A folder or file that fails the ownership or mode check is refused with an error (it may
be someone else's plant); a library of ours whose hash does not match is rebuilt.

Builds write private temporary files and rename them into place, so concurrent first uses
(xdist workers) see no library or a whole one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

PREFIX = "mixlab_native_"
DIGEST_SUFFIX = ".sha256"


class UnsafeCacheError(RuntimeError):
    """A cache folder or file that someone other than this user owns or can write."""


def cache_dir() -> Path:
    if "MIXLAB_CACHE_DIR" in os.environ:
        return Path(os.environ["MIXLAB_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "mixlab"


def compiler() -> str:
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return name
    raise RuntimeError(
        "mixlab.native needs a C compiler to build its CPU kernels, and none was found "
        "(tried $CC, gcc, cc). Install gcc, or set CC to a C compiler."
    )


def _target_description(cc: str, cflags: Sequence[str]) -> str:
    """The compiler's identity and the flags -march=native expands to on this CPU."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    # The driver prints the cc1 command line with -march=native expanded (gcc and clang).
    expanded = subprocess.run(
        [cc, *cflags, "-###", "-E", "-x", "c", os.devnull], capture_output=True, text=True
    ).stderr
    return "\n".join((version, expanded, platform.machine()))


def library_path(
    sources: Sequence[Path],
    cflags: Sequence[str],
    directory: Path | None = None,
    headers: Sequence[Path] = (),
) -> Path:
    """The verified cached library built from `sources` with `cflags` (`headers`: files
    the sources include, part of the key but not compiled); built if missing or if its
    bytes do not match their recorded hash. Raises UnsafeCacheError for a folder or file
    that is not this user's alone."""
    cc = compiler()
    hasher = hashlib.sha256()
    for source in (*sources, *headers):
        hasher.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    hasher.update(_target_description(cc, cflags).encode())
    directory = cache_dir() if directory is None else directory
    _secure_folder(directory)
    path = directory / f"{PREFIX}{hasher.hexdigest()[:20]}.so"
    for _ in range(3):  # a builder racing this one may pair its hash with our library
        if _verified(path):
            return path
        _build(cc, sources, cflags, path)
    raise UnsafeCacheError(f"mixlab.native: {path} does not match its hash after rebuilding")


def _secure_folder(directory: Path) -> None:
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
    except OSError as err:
        raise RuntimeError(
            f"mixlab.native cannot create its build cache {directory} ({err}); "
            "set MIXLAB_CACHE_DIR to a writable folder"
        ) from err
    _check_private(directory, "build cache folder")


def _check_private(path: Path, what: str) -> bool:
    """True when `path` exists and is this user's alone; False when it does not exist;
    UnsafeCacheError when someone else owns it or can write it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif info.st_uid != os.geteuid():
        problem = f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by others (mode {stat.filemode(info.st_mode)})"
    if problem:
        raise UnsafeCacheError(
            f"mixlab.native: refusing the {what} {path}: it {problem}. Remove it, or set "
            "MIXLAB_CACHE_DIR to a folder only you can write."
        )
    return True


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(path: Path) -> bool:
    """Whether `path` is a library this user built, unchanged since (see the docstring)."""
    digest_path = path.with_name(path.name + DIGEST_SUFFIX)
    present = _check_private(path, "cached library")
    recorded = _check_private(digest_path, "cached library's hash file")
    if not (present and recorded):
        return False
    return digest_path.read_text().strip() == _digest(path)


def _build(cc: str, sources: Sequence[Path], cflags: Sequence[str], path: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        fd, tmp_digest = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise RuntimeError(
            f"mixlab.native cannot write its build cache {path.parent} ({err}); "
            "set MIXLAB_CACHE_DIR to a writable folder"
        ) from err
    try:
        result = subprocess.run(
            [cc, *cflags, "-o", tmp, *map(str, sources)], capture_output=True, text=True
        )
        if result.returncode != 0:
            names = ", ".join(s.name for s in sources)
            raise RuntimeError(
                f"mixlab.native: compiling {names} with {cc} failed:\n{result.stderr}"
            )
        os.chmod(tmp, 0o755)
        Path(tmp_digest).write_text(_digest(Path(tmp)) + "\n")
        # The hash first: a reader that sees the new library also sees its hash.
        os.replace(tmp_digest, path.with_name(path.name + DIGEST_SUFFIX))
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp_digest):
            if os.path.exists(leftover):
                os.unlink(leftover)
