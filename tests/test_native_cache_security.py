"""The native build cache loads only a library this user built (mixlab.native.build): a
folder or file someone else owns or can write is refused, a new folder is created 0700, and
a library whose bytes differ from their recorded hash is rebuilt, never loaded."""

from __future__ import annotations

import os
import stat

import pytest

from mixlab import native
from mixlab.native import build

OTHER_UID = 65534  # nobody


def test_new_cache_folder_is_private(tmp_path):
    old = os.umask(0)  # the most permissive umask: the folder must still be 0700
    try:
        native.library_path(tmp_path / "fresh" / "cache")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh" / "cache").stat().st_mode) == 0o700


def test_world_writable_cache_folder_is_refused(tmp_path):
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    with pytest.raises(build.UnsafeCacheError, match="writable by others"):
        native.library_path(cache)
    assert not list(cache.iterdir())  # nothing built into it either


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_cache_folder_of_another_user_is_refused(tmp_path):
    cache = tmp_path / "theirs"
    cache.mkdir(mode=0o700)
    os.chown(cache, OTHER_UID, OTHER_UID)
    with pytest.raises(build.UnsafeCacheError, match="owned by uid 65534"):
        native.library_path(cache)


def _planted(tmp_path, monkeypatch):
    """A library at the predictable name whose constructor would leave a mark."""
    cache = tmp_path / "cache"
    path = native.library_path(cache)  # learn the name
    mark = tmp_path / "constructor-ran"
    plant = tmp_path / "plant.c"
    plant.write_text(
        "#include <stdio.h>\n"
        f'__attribute__((constructor)) static void run(void) {{ fopen("{mark}", "w"); }}\n'
    )
    import subprocess

    subprocess.run([build.compiler(), "-shared", "-fPIC", "-o", path, plant], check=True)
    return cache, path, mark


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_planted_library_of_another_user_is_refused(tmp_path, monkeypatch):
    cache, path, mark = _planted(tmp_path, monkeypatch)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(build.UnsafeCacheError, match="cached library .* owned by uid 65534"):
        native.library_path(cache)
    assert not mark.exists()


def test_planted_world_writable_library_is_refused(tmp_path, monkeypatch):
    cache, path, mark = _planted(tmp_path, monkeypatch)
    path.chmod(0o757)
    with pytest.raises(build.UnsafeCacheError, match="writable by others"):
        native.library_path(cache)
    with pytest.raises(build.UnsafeCacheError):
        native.bind(native.library_path(cache))
    assert not mark.exists()


def test_library_not_matching_its_hash_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    cache, path, mark = _planted(tmp_path, monkeypatch)  # owned by us, mode fine, other bytes
    rebuilt = native.library_path(cache)
    assert rebuilt == path
    lib = native.bind(rebuilt)  # the real library again: it has mixlab's entry points
    assert lib.mixlab_mix is not None
    assert not mark.exists()
    digest = (cache / (path.name + ".sha256")).read_text().strip()
    assert digest == build._digest(path)


def test_symlinked_library_is_refused(tmp_path):
    cache = tmp_path / "cache"
    path = native.library_path(cache)
    target = tmp_path / "elsewhere.so"
    path.rename(target)
    path.symlink_to(target)
    with pytest.raises(build.UnsafeCacheError, match="symbolic link"):
        native.library_path(cache)


def test_included_headers_are_part_of_the_key(tmp_path):
    header = tmp_path / "extra.h"
    header.write_text("/* one */\n")
    cache = tmp_path / "cache"
    plain = build.library_path(native.SOURCES, native.CFLAGS, cache)
    with_header = build.library_path(native.SOURCES, native.CFLAGS, cache, headers=[header])
    header.write_text("/* two */\n")
    changed = build.library_path(native.SOURCES, native.CFLAGS, cache, headers=[header])
    assert len({plain, with_header, changed}) == 3
