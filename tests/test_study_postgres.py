"""Two `mixlab ablate` workers sharing one study on a real PostgreSQL server: one is
SIGKILLed mid-trial and restarted, and every grid point still ends COMPLETE exactly once
(the killed trial taken over through Optuna's heartbeat and retry callback).

Needs the PostgreSQL server binaries (initdb, pg_ctl); without them the test fails naming
the missing program (tests/pg_cluster.py)."""

from __future__ import annotations

import threading
import time

import pytest
from optuna.trial import TrialState
from pg_cluster import pg_cluster
from test_study_runner import (
    TINY_AXES,
    ablate,
    assert_each_point_complete_once,
    kill_mid_trial,
    not_spare,
    read_trials,
    settings,
    wait_until_running,
    worker_pid,
    write_spec,
)
from test_study_short_queue import SEVERAL_CHUNKS

from mixlab.studies import runner, storage
from mixlab.studies.spec import load_spec

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def postgres_url():
    with pg_cluster() as url:
        yield url


def test_enqueue_lock_excludes_a_second_holder(postgres_url):
    inside, order = threading.Event(), []

    def hold():
        with storage.enqueue_lock(postgres_url, "locked"):
            inside.set()
            time.sleep(0.5)
            order.append("first out")

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(30)
    with storage.enqueue_lock(postgres_url, "locked"):
        order.append("second in")
    with storage.enqueue_lock(postgres_url, "another study"):  # other studies do not wait
        pass
    holder.join()
    assert order == ["first out", "second in"]


def test_two_workers_one_killed_and_restarted(tmp_path, postgres_url):
    # postgresql:// as a user writes it (mixlab picks the psycopg 3 driver)
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    axes = {**TINY_AXES, "seed": [0, 1, 2]}  # 12 points
    # trials of about half a second: the victim is sure to be caught in one
    spec_path = write_spec(tmp_path, name="pg_tiny", axes=axes, training={"epochs": 30})
    # The victim starts first so that it surely runs trials; it is killed in its second.
    # Beats of 1 s: the killed trial is stale (6 beats) within seconds.
    victim = ablate(spec_path, url, "--heartbeat", "1")
    wait_until_running(victim, postgres_url, "pg_tiny")
    survivor = ablate(spec_path, url, "--heartbeat", "1")
    killed = kill_mid_trial(victim, postgres_url, "pg_tiny")
    restarted = ablate(spec_path, url, "--heartbeat", "1")
    for proc in (survivor, restarted):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err[-3000:]
        assert "12/12 grid points complete" in out
    trials = read_trials(postgres_url, "pg_tiny")
    assert trials[killed].state == TrialState.FAIL and "error" not in trials[killed].user_attrs
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[killed].params
    assert_each_point_complete_once(load_spec(spec_path), trials)
    # both workers shared the study before the kill
    assert {victim.pid, survivor.pid} <= {worker_pid(t) for t in trials}


def test_a_grid_several_chunks_long_completes_each_point_once(tmp_path, postgres_url):
    # The short queue (mixlab.studies.queue) topped up by two workers on a server.
    spec = load_spec(write_spec(tmp_path, name="pg_chunks", axes=SEVERAL_CHUNKS))
    state = runner.run_study(settings(spec, postgres_url), workers=2)
    assert (state.complete, state.total) == (spec.grid_size, spec.grid_size)
    trials = not_spare(read_trials(postgres_url, "pg_chunks"))
    assert len(trials) == spec.grid_size  # each point enqueued once, none superseded
    assert_each_point_complete_once(spec, trials)
    assert [t.system_attrs["fixed_params"] for t in trials] == spec.grid_points()
    assert len({worker_pid(t) for t in trials}) == 2, "the workers did not share the study"
