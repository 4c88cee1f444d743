"""Nothing lost on a full disk or a badly timed kill (mixlab.studies.journal, runner):

- a torn or corrupt journal tail is cut back to its intact prefix on the next run, the
  damaged file kept aside, and the study resumes with every complete trial kept;
- a write that fails (ENOSPC, injected into the journal's write) ends the run with a
  message and leaves a journal every reader can open;
- a process killed at any step of creating a study or enqueueing its points leaves a study
  the next run finishes, every point enqueued once.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from test_study_runner import (
    assert_each_point_complete_once,
    read_trials,
    settings,
    write_spec,
)

from mixlab.studies import creation, journal, runner, storage
from mixlab.studies.spec import load_spec


def fast(spec, url):
    # The trial a dropped tail leaves RUNNING carries this process's own pid (the runs
    # share a process here) and the heartbeat of the run that stamped it: a short one
    # lets it be taken as lost in about a second.
    return settings(spec, url, heartbeat_s=0.2)


def _complete_study(tmp_path, name="tiny"):
    spec = load_spec(write_spec(tmp_path, name=name))
    url = str(tmp_path / f"{name}.journal")
    runner.run_study(fast(spec, url))
    return spec, url


def _complete_numbers(url, name):
    return {t.number for t in read_trials(url, name) if t.state == TrialState.COMPLETE}


def _assert_journal_whole(path):
    kept, _, size = journal.intact_length(path)
    assert kept == size, f"journal has {size - kept} damaged bytes at its end"


@pytest.mark.parametrize("cut", [37, 1], ids=["37 bytes cut", "newline cut"])
def test_torn_tail_is_cut_back_and_the_study_resumes(tmp_path, capsys, cut):
    spec, url = _complete_study(tmp_path)
    path = tmp_path / "tiny.journal"
    original = path.read_bytes()
    path.write_bytes(original[:-cut])
    before = _complete_numbers(url, "tiny")  # what Optuna still reads of the torn file

    state = runner.run_study(fast(spec, url))
    err = capsys.readouterr().err
    assert "the journal was damaged" in err and "half-written" in err
    aside = tmp_path / "tiny.journal.damaged-1"
    assert aside.read_bytes() == original[:-cut]  # kept aside, byte for byte
    assert state.complete == state.total == 8
    trials = read_trials(url, "tiny")
    assert before <= _complete_numbers(url, "tiny")  # every complete trial kept
    assert_each_point_complete_once(spec, trials)
    _assert_journal_whole(path)


def test_corrupt_middle_keeps_the_intact_prefix(tmp_path, capsys):
    spec, url = _complete_study(tmp_path)
    path = tmp_path / "tiny.journal"
    lines = path.read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    path.write_bytes(b"".join([*lines[:middle], b'{"op_code": 1, garbage\n', *lines[middle:]]))
    with pytest.raises(storage.StorageError, match="--storage .*tiny.journal"):
        storage.open_storage(url)  # a reader is told, not given a traceback

    state = runner.run_study(fast(spec, url))
    err = capsys.readouterr().err
    assert f"after its first {middle} operations" in err
    assert f"dropped {len(lines) - middle + 1} line(s)" in err
    assert state.complete == 8
    assert_each_point_complete_once(spec, read_trials(url, "tiny"))
    # A second damage later gets its own copy: the first one is never overwritten.
    first_copy = (tmp_path / "tiny.journal.damaged-1").read_bytes()
    path.write_bytes(path.read_bytes()[:-5])
    runner.run_study(fast(spec, url))
    assert (tmp_path / "tiny.journal.damaged-1").read_bytes() == first_copy
    assert (tmp_path / "tiny.journal.damaged-2").is_file()


def _disk_fills_after(monkeypatch, writes: int) -> None:
    """Let `writes` journal writes through, then write half of the next and fail ENOSPC."""
    real = journal._write_all
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] > writes:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(journal, "_write_all", write)


def test_full_disk_ends_the_run_with_a_message_and_a_whole_journal(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    _disk_fills_after(monkeypatch, writes=40)  # a few trials in
    with pytest.raises(storage.StorageError, match="No space left on device.*run the same"):
        runner.run_study(fast(spec, url))
    path = tmp_path / "tiny.journal"
    _assert_journal_whole(path)
    kept = _complete_numbers(url, "tiny")
    assert kept, "the disk filled before any trial completed: move the failure later"
    monkeypatch.undo()

    state = runner.run_study(fast(spec, url))
    assert state.complete == state.total == 8
    assert kept <= _complete_numbers(url, "tiny")
    assert_each_point_complete_once(spec, read_trials(url, "tiny"))
    assert not list(tmp_path.glob("*.damaged-*"))  # nothing needed repair


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_real_full_disk(tmp_path, kind):
    """The same on a real tmpfs that fills up part-way through the study, for the journal
    and for SQLite (whose transactions keep it whole by themselves)."""
    spec = load_spec(write_spec(tmp_path))
    disk = tmp_path / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk], check=True)
    try:
        url = str(disk / "tiny.journal") if kind == "journal" else f"sqlite:///{disk}/tiny.db"
        creation.prepare_study(spec, url)
        # The journal is left 8 KiB (its trials need about twice that); SQLite, whose
        # study grows by about one page, nothing.
        free = os.statvfs(disk)
        filler = disk / "filler"
        left = 8 << 10 if kind == "journal" else 0
        filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - left))
        with pytest.raises(storage.StorageError, match="No space left on device|disk is full"):
            runner.run_study(fast(spec, url))
        if kind == "journal":
            _assert_journal_whole(disk / "tiny.journal")
        kept = _complete_numbers(url, "tiny")  # readable
        assert kept or kind == "sqlite"
        filler.unlink()
        state = runner.run_study(fast(spec, url))
        assert state.complete == 8 and kept <= _complete_numbers(url, "tiny")
        assert_each_point_complete_once(spec, read_trials(url, "tiny"))
    finally:
        subprocess.run(["umount", "--lazy", disk], check=True)


def test_full_disk_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    from mixlab import cli

    spec_path = write_spec(tmp_path)
    _disk_fills_after(monkeypatch, writes=3)  # while the study is being created
    code = cli.main(["ablate", str(spec_path), "--storage", str(tmp_path / "j.journal")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("mixlab ablate: --storage: cannot write") and "No space left" in err
    _assert_journal_whole(tmp_path / "j.journal")


# ---- a kill at every step of creating a study ---------------------------------------------


def _killed_at_step(url: str, spec, step: int, torn: bool) -> None:
    """prepare_study in a forked child that dies (os._exit) at its `step`-th journal
    append: before writing it, or after writing half of it."""
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        calls = {"n": 0}
        real = journal.Backend.append_logs

        def append_logs(self, logs):
            calls["n"] += 1
            if calls["n"] == step:
                if torn:
                    with open(self._file_path, "ab") as f:
                        f.write(b'{"op_code": 5, "worker_id": "x", "study_id": 0, "us')
                os._exit(9)
            real(self, logs)

        journal.Backend.append_logs = append_logs
        try:
            creation.prepare_study(spec, url)
        finally:
            os._exit(0 if calls["n"] < step else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_kill_at_any_step_of_creation_leaves_a_study_the_next_run_finishes(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    # the study, then each attribute, then each grid point enqueued
    steps = 1 + len(creation.study_attrs(spec)) + spec.grid_size
    for torn in (False, True):
        for step in range(1, steps + 1):
            url = str(tmp_path / f"kill-{step}-{torn}.journal")
            assert _killed_at_step(url, spec, step, torn) == 9, (step, torn)
            state = runner.run_study(settings(spec, url))
            assert state.complete == 8, (step, torn)
            study = optuna.load_study(study_name="tiny", storage=storage.open_storage(url))
            assert study.user_attrs.keys() == creation.study_attrs(spec).keys(), (step, torn)
            trials = read_trials(url, "tiny")
            assert len(trials) == 8, (step, torn)  # each point enqueued once
            assert_each_point_complete_once(spec, trials)
        # one more step than creation has: the child finished without being killed
        url = str(tmp_path / f"whole-{torn}.journal")
        assert _killed_at_step(url, spec, steps + 1, torn) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="os.fork")
def test_kill_during_sqlite_creation_leaves_a_study_the_next_run_finishes(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    for step in range(1, len(creation.study_attrs(spec)) + 1):
        url = f"sqlite:///{tmp_path}/kill-{step}.db"
        pid = os.fork()
        if pid == 0:
            calls = {"n": 0}
            real = optuna.storages.RDBStorage.set_study_user_attr

            def set_attr(self, *args, _real=real, _calls=calls, _step=step):
                _calls["n"] += 1
                if _calls["n"] == _step:
                    os._exit(9)
                _real(self, *args)

            optuna.storages.RDBStorage.set_study_user_attr = set_attr
            try:
                creation.prepare_study(spec, url)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 9
        # usable: its attributes complete, and a run of its first points goes through
        assert runner.run_study(settings(spec, url, n_trials=2)).complete == 2, step
        study = optuna.load_study(study_name="tiny", storage=storage.open_storage(url))
        assert study.user_attrs.keys() == creation.study_attrs(spec).keys(), step
