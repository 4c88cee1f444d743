"""Study workers (mixlab.studies.runner, worker, queue, liveness): every grid point COMPLETE
exactly once, with its curve, under parallel workers, dead workers, failing trials and
SIGKILL + resume.

The cheap `quick_objective` stands in for the active-learning loop where a test is about
the bookkeeping; `test_resume_after_sigkill` and `test_same_seed_gives_the_same_curve` run
the real loop (`mixlab ablate` end to end) on a tiny digits grid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mixlab.studies import creation, liveness, runner, storage
from mixlab.studies.spec import SpecError, load_spec
from mixlab.studies.survey import SPARE_ATTR, SUPERSEDED_ATTR, point_key, survey

# A real active-learning trial on digits of a few tenths of a second (one thread): long
# enough to be killed in the middle of.
TINY_TRAINING = {"epochs": 10}
TINY_AXES = {
    "strategy": ["random", "entropy"],
    "alpha": [0.0, 0.4],
    "initial_budget": 20,
    "query_size": 10,
    "rounds": 2,
    "seed": [0, 1],
}
CURVE_ATTRS = ("labeled_sizes", "test_accuracy", "test_loss", "aulc", "final_accuracy", "wall_s")


def write_spec(folder: Path, name: str = "tiny", axes=None, training=None, **top) -> Path:
    """A spec file; `axes` values are lists, scalars or range dicts."""
    lines = [f'name = "{name}"', 'dataset = "digits"', 'model = "mlp"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    for table, values in (("training", training or TINY_TRAINING), ("axes", axes or TINY_AXES)):
        lines.append(f"[{table}]")
        for key, value in values.items():
            if isinstance(value, dict):
                inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inline} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def quick_objective(config):
    """A deterministic stand-in for run_active_learning (module level: workers import it)."""
    from mixlab.active.loop import LearningCurve

    time.sleep(float(os.environ.get("MIXLAB_TEST_TRIAL_S", "0")))
    sizes = [config.initial_budget + r * config.query_size for r in range(config.rounds + 1)]
    acc = [
        min(1.0, 0.5 + 0.01 * config.seed + 0.1 * config.alpha + 0.02 * r)
        for r in range(len(sizes))
    ]
    return LearningCurve(sizes, acc, [1 - a for a in acc], sum(acc) / len(acc), acc[-1], 0.0)


def read_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    store = storage.open_storage(url)
    return store.get_all_trials(store.get_study_id_from_name(name))


def complete_per_point(trials) -> Counter:
    return Counter(point_key(t.params) for t in trials if t.state == TrialState.COMPLETE)


def assert_each_point_complete_once(spec, trials) -> None:
    points = {point_key(p) for p in spec.grid_points()}
    done = complete_per_point(trials)
    assert set(done) == points, f"missing: {points - set(done)}"
    assert max(done.values()) == 1, f"completed twice: {[k for k, n in done.items() if n > 1]}"


def worker_pid(trial) -> int | None:
    return liveness.worker_of(trial).get("pid")


def not_spare(trials) -> list:
    """The trials that are not spares (empty trials ask() made when the queue had emptied)."""
    spares = [t for t in trials if SPARE_ATTR in t.user_attrs]
    assert all(t.state == TrialState.FAIL and not t.params for t in spares)
    return [t for t in trials if t not in spares]


def claim_as_foreign_worker(spec, url, machine, pid, heartbeat, heartbeat_s) -> int:
    """Claim the first queued trial as another worker would, and leave it RUNNING stamped
    with that worker; returns its number."""
    store = storage.open_storage(url)
    study = optuna.load_study(study_name=spec.name, storage=store)
    trial = study.ask()
    for axis, values in spec.axes.items():
        trial.suggest_categorical(axis, values)
    study_id = store.get_study_id_from_name(spec.name)
    trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    worker = {"machine": machine, "pid": pid, "heartbeat_s": heartbeat_s, "trial": trial.number}
    store.set_trial_system_attr(trial_id, liveness.WORKER_ATTR, worker)
    store.set_trial_system_attr(trial_id, liveness.HEARTBEAT_ATTR, heartbeat)
    return trial.number


def running_trials_of(proc: subprocess.Popen, url: str, name: str):
    """(trials of `proc` RUNNING, whether any trial is COMPLETE), read from the storage."""
    try:
        trials = read_trials(url, name)
    except Exception:  # the study does not exist yet
        return [], False
    mine = [t for t in trials if t.state == TrialState.RUNNING and worker_pid(t) == proc.pid]
    return mine, any(t.state == TrialState.COMPLETE for t in trials)


def kill_mid_trial(proc: subprocess.Popen, url: str, name: str, timeout: float = 180) -> int:
    """SIGKILL `proc` while it runs a trial (once some trial is COMPLETE); returns the number
    of the trial it leaves RUNNING. The worker is stopped (SIGSTOP) while that is checked
    again, so that what is read is what it is killed in the middle of."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker finished before it could be killed"
        mine, any_complete = running_trials_of(proc, url, name)
        if mine and any_complete:
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.05)  # let a commit it already sent land
            mine, _ = running_trials_of(proc, url, name)
            if mine:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return mine[0].number
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no trial ran within the timeout")


def wait_until_running(proc: subprocess.Popen, url: str, name: str, timeout=180) -> None:
    deadline = time.monotonic() + timeout
    while not running_trials_of(proc, url, name)[0]:
        if proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "the worker ran no trial"
        time.sleep(0.05)


def ablate(spec: Path, url: str, *extra: str) -> subprocess.Popen:
    """`mixlab ablate` in a new process, as a user runs it (on one thread: the tests run
    several processes at once on two cores)."""
    argv = [sys.executable, "-m", "mixlab.cli", "ablate", str(spec), "--storage", url, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def settings(spec, url, **kw) -> runner.RunSettings:
    kw.setdefault("objective", quick_objective)
    kw.setdefault("progress", False)
    return runner.RunSettings(spec, url, **kw)


def test_grid_study_records_each_point_once_with_its_curve(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    state = runner.run_study(settings(spec, url))
    assert (state.complete, state.total, state.in_flight, state.failed) == (8, 8, 0, [])
    trials = read_trials(url, "tiny")
    assert len(trials) == 8
    assert_each_point_complete_once(spec, trials)
    for t in trials:
        assert set(t.params) == {"strategy", "alpha", "seed"}  # the swept axes (docs/design.md §8)
        assert set(CURVE_ATTRS) <= set(t.user_attrs)
        config = t.user_attrs["config"]
        assert {k: config[k] for k in t.params} == t.params
        assert (config["rounds"], config["epochs"], config["dataset"]) == (2, 10, "digits")
        assert t.value == t.user_attrs["aulc"]
        assert len(t.user_attrs["labeled_sizes"]) == len(t.user_attrs["test_accuracy"]) == 3
    attrs = optuna.load_study(study_name="tiny", storage=storage.open_storage(url)).user_attrs
    assert attrs["spec"]["axes"]["seed"] == [0, 1]
    assert attrs["objective"] == "aulc" and attrs["spec_path"] == spec.path
    assert {"mixlab_version", "torch_version", "machine"} <= set(attrs)
    # Running it again finds nothing to do.
    assert runner.run_study(settings(spec, url)).complete == 8
    assert len(read_trials(url, "tiny")) == 8


def test_n_trials_limits_a_grid_run_to_its_first_points(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    state = runner.run_study(settings(spec, url, n_trials=3))
    assert (state.complete, state.total) == (3, 3)
    assert [t.params for t in read_trials(url, "tiny")] == spec.grid_points()[:3]


def test_parallel_workers_never_claim_a_point_twice(tmp_path, monkeypatch):
    axes = {"alpha": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "seed": [0, 1, 2, 3]}
    spec = load_spec(write_spec(tmp_path, axes=axes))
    url = str(tmp_path / "tiny.journal")
    monkeypatch.setenv("MIXLAB_TEST_TRIAL_S", "0.15")
    state = runner.run_study(settings(spec, url), workers=3)
    assert (state.complete, state.total) == (24, 24)
    trials = not_spare(read_trials(url, "tiny"))
    assert len(trials) == 24  # no duplicate, not even one abandoned
    assert_each_point_complete_once(spec, trials)
    assert len({worker_pid(t) for t in trials}) >= 2, "the workers did not run in parallel"
    # Each point was enqueued once, in grid order, and claimed from the queue.
    assert [t.system_attrs["fixed_params"] for t in trials] == spec.grid_points()


def test_a_point_queued_twice_is_completed_once(tmp_path):
    # What a retry enqueued at the moment another worker enqueues the open points leaves.
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    creation.prepare_study(spec, url)
    study = optuna.load_study(study_name="tiny", storage=storage.open_storage(url))
    point = spec.grid_points()[2]
    study.enqueue_trial(point)
    state = runner.run_study(settings(spec, url))
    assert (state.complete, state.lost) == (8, 0)
    trials = read_trials(url, "tiny")
    assert_each_point_complete_once(spec, trials)
    twice = [t for t in trials if t.params == point]
    assert [t.state for t in twice] == [TrialState.COMPLETE, TrialState.FAIL]
    assert twice[1].user_attrs[SUPERSEDED_ATTR] is True


def test_a_trial_being_claimed_holds_its_point(tmp_path):
    # Claimed, with the first of its params set: not an open point to enqueue again.
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    creation.prepare_study(spec, url, n_trials=1)
    study = optuna.load_study(study_name="tiny", storage=storage.open_storage(url))
    study.ask().suggest_categorical("strategy", TINY_AXES["strategy"])
    (trial,) = study.get_trials()
    assert trial.state == TrialState.RUNNING and len(trial.params) == 1
    state = survey(spec, 1, [trial])
    assert (state.in_flight, state.open, state.waiting) == (1, 0, 0)


def test_prepare_enqueues_each_point_once_and_completes_a_cut_queue(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    creation.prepare_study(spec, url, n_trials=3)  # a run of the first 3 points
    assert len(read_trials(url, "tiny")) == 3
    for _ in range(2):  # the full run, twice: the rest once
        creation.prepare_study(spec, url)
    trials = read_trials(url, "tiny")
    assert [t.state for t in trials] == [TrialState.WAITING] * 8
    assert [t.system_attrs["fixed_params"] for t in trials] == spec.grid_points()


def test_failing_trial_is_recorded_and_retried_once(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    calls = Counter()

    def flaky(config):
        point = (config.strategy, config.alpha, config.seed)
        calls[point] += 1
        if point == ("random", 0.4, 1):
            raise RuntimeError("always broken")
        if point == ("entropy", 0.0, 0) and calls[point] == 1:
            raise RuntimeError("broken once")
        return quick_objective(config)

    state = runner.run_study(settings(spec, url, objective=flaky))
    assert (state.complete, state.total) == (7, 8)
    assert state.failed == [
        ({"strategy": "random", "alpha": 0.4, "seed": 1}, "RuntimeError: always broken")
    ]
    by_point = {}
    for t in read_trials(url, "tiny"):
        by_point.setdefault((t.params["strategy"], t.params["alpha"], t.params["seed"]), []).append(
            t
        )
    always = by_point[("random", 0.4, 1)]
    assert [t.state for t in always] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["error"] == "RuntimeError: always broken" for t in always)
    assert "always broken" in always[0].user_attrs["traceback"]
    once = by_point[("entropy", 0.0, 0)]
    assert [t.state for t in once] == [TrialState.FAIL, TrialState.COMPLETE]
    assert calls[("random", 0.4, 1)] == 2  # retried once, not forever
    # A second run does not retry the point that failed twice.
    runner.run_study(settings(spec, url, objective=flaky))
    assert calls[("random", 0.4, 1)] == 2


def test_trial_of_a_killed_local_worker_is_run_again_at_once(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    creation.prepare_study(spec, url)
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process now
    # A fresh heartbeat and an hour's grace: only the dead process can tell.
    killed = claim_as_foreign_worker(spec, url, liveness.MACHINE, dead.pid, time.time(), 3600.0)
    state = runner.run_study(settings(spec, url))
    assert (state.complete, state.lost) == (8, 1)
    trials = read_trials(url, "tiny")
    assert trials[killed].state == TrialState.FAIL and "error" not in trials[killed].user_attrs
    # Optuna's retry callback enqueued it again, naming the trial it retries.
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[killed].params
    assert_each_point_complete_once(spec, trials)


def test_live_trial_of_another_machine_is_waited_for_until_its_heartbeat_stops(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    url = str(tmp_path / "tiny.journal")
    creation.prepare_study(spec, url)
    beat, heartbeat_s = time.time(), 0.5
    foreign_number = claim_as_foreign_worker(spec, url, "elsewhere/boot", 1, beat, heartbeat_s)
    state = runner.run_study(settings(spec, url, heartbeat_s=0.1))
    assert (state.complete, state.lost) == (8, 1)
    trials = read_trials(url, "tiny")
    foreign = trials[foreign_number]
    rerun = [t for t in trials if t.params == foreign.params][-1]
    assert foreign.state == TrialState.FAIL
    # Taken over only after its grace period, after every other point was done.
    grace = liveness.GRACE_BEATS * heartbeat_s
    assert foreign.datetime_complete.timestamp() - beat >= grace
    assert rerun.state == TrialState.COMPLETE and rerun.number == len(trials) - 1
    assert_each_point_complete_once(spec, trials)


def test_tpe_study_samples_the_ranges_and_stops_at_n_trials(tmp_path):
    axes = {
        "alpha": {"low": 0.05, "high": 2.0, "log": True},
        "initial_budget": {"low": 20, "high": 40, "step": 10},
        "strategy": ["random", "entropy"],
        "rounds": 1,
        "query_size": 10,
    }
    spec = load_spec(write_spec(tmp_path, axes=axes, sampler="tpe", n_trials=6))
    url = str(tmp_path / "tiny.journal")
    state = runner.run_study(settings(spec, url), workers=2)
    assert (state.complete, state.total) == (6, 6)
    trials = not_spare(read_trials(url, "tiny"))
    assert len(trials) == 6
    for t in trials:
        assert 0.05 <= t.params["alpha"] <= 2.0
        assert t.params["initial_budget"] in (20, 30, 40)
        assert t.params["strategy"] in ("random", "entropy")
    # --n-trials raises the total; the study continues from where it is.
    state = runner.run_study(settings(spec, url, n_trials=8))
    assert (state.complete, len(not_spare(read_trials(url, "tiny")))) == (8, 8)


def test_changed_spec_under_the_same_name_is_refused(tmp_path):
    url = str(tmp_path / "tiny.journal")
    creation.prepare_study(load_spec(write_spec(tmp_path)), url)
    changed = load_spec(write_spec(tmp_path, axes={**TINY_AXES, "seed": [0, 1, 2]}))
    with pytest.raises(SpecError, match="different spec.*axes"):
        creation.prepare_study(changed, url)


def test_same_seed_gives_the_same_curve(tmp_path):
    """The real loop, twice, in two storages."""
    spec = load_spec(
        write_spec(tmp_path, axes={**TINY_AXES, "strategy": "entropy", "alpha": 0.4, "seed": [3]})
    )
    curves = []
    for run in ("a", "b"):
        url = str(tmp_path / f"{run}.journal")
        runner.run_study(runner.RunSettings(spec, url, progress=False))
        (trial,) = read_trials(url, "tiny")
        curves.append((trial.user_attrs["test_accuracy"], trial.user_attrs["labeled_sizes"]))
    assert curves[0] == curves[1]


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """`mixlab ablate` end to end on digits: SIGKILL it mid-trial, run it again."""
    spec_path = write_spec(tmp_path)
    url = str(tmp_path / "studies" / "tiny.journal")
    killed = kill_mid_trial(ablate(spec_path, url), url, "tiny")
    left = read_trials(url, "tiny")
    assert left[killed].state == TrialState.RUNNING  # what the killed worker left behind
    rerun = ablate(spec_path, url)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "8/8 grid points complete" in out and "lost with their worker" in out
    trials = read_trials(url, "tiny")
    assert trials[killed].state == TrialState.FAIL
    assert "error" not in trials[killed].user_attrs
    assert_each_point_complete_once(load_spec(spec_path), trials)
    # Nothing lost: the trials completed before the kill are still there, unchanged.
    for t in left:
        if t.state == TrialState.COMPLETE:
            assert trials[t.number].user_attrs == t.user_attrs
