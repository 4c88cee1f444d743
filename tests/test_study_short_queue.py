"""The queue is kept short (mixlab.studies.queue): a run enqueues CHUNK points, not its whole
grid, before its first trial, and workers top the queue up chunk by chunk; every point is
still completed exactly once, with several workers and across a kill part-way through a
top-up."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from test_study_runner import (
    assert_each_point_complete_once,
    not_spare,
    quick_objective,
    read_trials,
    settings,
    worker_pid,
    write_spec,
)

from mixlab.studies import creation, journal, queue, runner
from mixlab.studies.spec import load_spec

# 2 x 3,000 = 6,000 points: one storage write each took ~9 minutes on a loaded journal
LARGE_AXES = {"strategy": "random", "alpha": [0.0, 0.5], "seed": list(range(3000))}
# 5 x 24 = 120 points: nearly four chunks
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
SEVERAL_CHUNKS = {"strategy": "random", "alpha": ALPHAS, "seed": list(range(24))}


class StopRun(BaseException):
    """Stands in for a kill: not an Exception, so no worker catches it as a trial's error."""


def count_writes(monkeypatch) -> dict[str, int]:
    """Counts journal log entries written and enqueue_trial calls, as they happen."""
    counts = {"logs": 0, "enqueued": 0}
    append, enqueue = journal.Backend.append_logs, optuna.Study.enqueue_trial

    def append_logs(self, logs):
        counts["logs"] += len(logs)
        append(self, logs)

    def enqueue_trial(self, *args, **kwargs):
        counts["enqueued"] += 1
        return enqueue(self, *args, **kwargs)

    monkeypatch.setattr(journal.Backend, "append_logs", append_logs)
    monkeypatch.setattr(optuna.Study, "enqueue_trial", enqueue_trial)
    return counts


def test_a_large_grid_starts_its_first_trial_after_a_chunk_of_writes(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path, name="large", axes=LARGE_AXES))
    assert spec.grid_size == 6000
    url = str(tmp_path / "large.journal")
    counts = count_writes(monkeypatch)
    at_first_trial = {}

    def objective(config):
        at_first_trial.update(counts)
        raise StopRun

    with pytest.raises(StopRun):
        runner.run_study(settings(spec, url, objective=objective))
    assert at_first_trial["enqueued"] == queue.CHUNK
    # the study and its attrs, a log per enqueued trial, the claim and its params: O(CHUNK)
    # (6,012 logs before the queue was kept short, 44 after)
    others = 1 + len(creation.study_attrs(spec)) + 10
    assert at_first_trial["logs"] <= queue.CHUNK + others, at_first_trial
    trials = read_trials(url, "large")
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(trials) == queue.CHUNK + 1  # the interrupted trial was enqueued again
    queued_points = [spec.point(i) for i in range(1, queue.CHUNK)] + [spec.point(0)]
    assert [t.system_attrs["fixed_params"] for t in waiting] == queued_points
    # A second start finds the queue full: nothing enqueued.
    before = counts["enqueued"]
    creation.prepare_study(spec, url)
    assert counts["enqueued"] == before


def test_a_grid_several_chunks_long_completes_each_point_once_with_two_workers(tmp_path):
    spec = load_spec(write_spec(tmp_path, name="chunks", axes=SEVERAL_CHUNKS))
    assert spec.grid_size > 3 * queue.CHUNK
    url = str(tmp_path / "chunks.journal")
    state = runner.run_study(settings(spec, url), workers=2)
    assert (state.complete, state.total, state.lost) == (120, 120, 0)
    trials = not_spare(read_trials(url, "chunks"))
    assert len(trials) == 120  # each point enqueued once, none superseded
    assert_each_point_complete_once(spec, trials)
    # chunk after chunk, in grid order
    assert [t.system_attrs["fixed_params"] for t in trials] == spec.grid_points()
    assert len({worker_pid(t) for t in trials}) == 2, "the workers did not share the study"


def test_the_queue_stays_short_while_a_run_goes(tmp_path):
    spec = load_spec(write_spec(tmp_path, name="chunks", axes=SEVERAL_CHUNKS))
    url = str(tmp_path / "chunks.journal")
    queued = []

    def objective(config):
        queued.append(sum(t.state == TrialState.WAITING for t in read_trials(url, "chunks")))
        return quick_objective(config)

    assert runner.run_study(settings(spec, url, objective=objective)).complete == 120
    assert max(queued) < queue.CHUNK  # the running trial was claimed from a full queue
    assert min(queued[: -queue.CHUNK]) >= queue.REFILL_BELOW - 1  # topped up before it ran dry


def test_a_kill_in_the_middle_of_a_top_up_strands_no_point(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path, name="chunks", axes=SEVERAL_CHUNKS))
    url = str(tmp_path / "chunks.journal")
    counts = count_writes(monkeypatch)
    enqueue = optuna.Study.enqueue_trial

    def killed_at_40(self, *args, **kwargs):
        if counts["enqueued"] == 40:  # the 9th point of the first top-up is never written
            raise StopRun
        return enqueue(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", killed_at_40)
    with pytest.raises(StopRun):
        runner.run_study(settings(spec, url, objective=quick_objective))
    trials = read_trials(url, "chunks")
    assert len(trials) == 40 and not any(t.state == TrialState.RUNNING for t in trials)
    monkeypatch.setattr(optuna.Study, "enqueue_trial", enqueue)
    assert runner.run_study(settings(spec, url)).complete == 120  # the resumed run
    trials = read_trials(url, "chunks")
    assert len(trials) == 120
    assert_each_point_complete_once(spec, trials)
    assert [t.system_attrs["fixed_params"] for t in trials] == spec.grid_points()
