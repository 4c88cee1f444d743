"""The CLI never prints a traceback for a user error: each case below exits non-zero with
one line that names the argument, and (for ablate) before any storage is created."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from pg_cluster import pg_cluster
from test_study_runner import write_spec

from mixlab import cli
from mixlab.studies import storage


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, what reached stderr), as the `mixlab` process would end."""
    try:
        code = cli.main([str(a) for a in argv])
        message = ""
    except SystemExit as exit:  # Python prints a string code to stderr and exits 1
        code = exit.code if isinstance(exit.code, int) else 1
        message = "" if isinstance(exit.code, int) or exit.code is None else str(exit.code)
    return code, (capsys.readouterr().err + message).strip()


def assert_one_line_naming(code: int, err: str, *named: str) -> None:
    assert code != 0, err
    assert "Traceback" not in err and "\n" not in err, err
    for name in named:
        assert name in err, (name, err)


@contextmanager
def silent_server():
    """A local port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


# ---- mixlab ablate -----------------------------------------------------------------------


@pytest.fixture
def spec_path(tmp_path):
    return write_spec(tmp_path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1000000"])
def test_ablate_heartbeat_must_be_finite_and_in_range(tmp_path, spec_path, capsys, value):
    journal = tmp_path / "study.journal"
    code, err = run_cli(["ablate", spec_path, f"--heartbeat={value}", "--storage", journal], capsys)
    assert_one_line_naming(code, err, "--heartbeat", value)
    assert not journal.exists()


@pytest.mark.parametrize(("option", "value"), [("--workers", "0"), ("--workers", "100000")])
def test_ablate_worker_count_in_range(tmp_path, spec_path, capsys, option, value):
    argv = ["ablate", spec_path, f"{option}={value}", "--storage", tmp_path / "j"]
    code, err = run_cli(argv, capsys)
    assert_one_line_naming(code, err, option, value)


def _spec_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    not_utf8 = tmp_path / "latin1.toml"
    not_utf8.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    folder = tmp_path / "a_folder.toml"
    folder.mkdir()
    huge = {"seed": list(range(1000)), "alpha": [i / 1000 for i in range(1000)]}
    nan = write_spec(tmp_path, name="n", axes={"alpha": [0.5]})
    nan.write_text(nan.read_text().replace("alpha = [0.5]", "alpha = [nan]"))
    return {
        "not UTF-8": (not_utf8, "not UTF-8"),
        "a folder": (folder, "is a folder"),
        "description = 5": (write_spec(tmp_path, name="d", description=5), "description"),
        "nan alpha": (nan, "finite"),
        "17 M points": (
            write_spec(tmp_path, name="big", axes={**huge, "query_size": list(range(1, 18))}),
            "the grid has 17,000,000 points, more than the 100,000",
        ),
        "a million points": (write_spec(tmp_path, name="m", axes=huge), "1,000,000 points"),
    }


@pytest.mark.parametrize(
    "case",
    ["not UTF-8", "a folder", "description = 5", "nan alpha", "17 M points", "a million points"],
)
def test_ablate_bad_spec_is_one_line_before_any_storage(tmp_path, capsys, case):
    path, named = _spec_cases(tmp_path)[case]
    journal = tmp_path / "study.journal"
    started = time.perf_counter()
    code, err = run_cli(["ablate", path, "--storage", journal], capsys)
    assert time.perf_counter() - started < 20  # counted, never expanded
    assert_one_line_naming(code, err, str(path), named)
    assert not journal.exists()


def test_ablate_cuda_without_cuda_is_refused_up_front(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = write_spec(tmp_path, name="gpu", device="cuda")
    journal = tmp_path / "study.journal"
    code, err = run_cli(["ablate", path, "--storage", journal], capsys)
    assert_one_line_naming(code, err, "device", "no CUDA device")
    assert not journal.exists()


def _storage_cases(tmp_path: Path) -> dict[str, tuple[str, list[str]]]:
    port = _refused_port()
    (tmp_path / "folder").mkdir()
    return {
        "refused port": (
            f"postgresql://mixlab:hunter2@127.0.0.1:{port}/db",
            [f"mixlab:***@127.0.0.1:{port}/db", "refused"],
        ),
        "bare postgresql://": ("postgresql://", ["--storage postgresql+psycopg://", "failed"]),
        "a folder": (str(tmp_path / "folder"), ["--storage", "is a folder"]),
        "under /proc": ("/proc/mixlab-test/study.journal", ["/proc/mixlab-test/study.journal"]),
        "sqlite under /proc": ("sqlite:////proc/mixlab-test.db", ["/proc/mixlab-test.db"]),
    }


@pytest.mark.parametrize(
    "case", ["refused port", "bare postgresql://", "a folder", "under /proc", "sqlite under /proc"]
)
@pytest.mark.parametrize("command", ["ablate", "report"])
def test_unusable_storage_is_one_line_naming_it(tmp_path, spec_path, capsys, case, command):
    url, named = _storage_cases(tmp_path)[case]
    if command == "ablate":
        argv = ["ablate", spec_path, "--storage", url]
    else:
        argv = ["report", "--study", "tiny", "--storage", url, "--out", tmp_path / "out"]
    code, err = run_cli(argv, capsys)
    assert_one_line_naming(code, err, "--storage", *named)
    assert "hunter2" not in err


def test_server_that_never_answers_times_out(tmp_path, spec_path, capsys):
    with silent_server() as port:
        url = f"postgresql://mixlab@127.0.0.1:{port}/db?connect_timeout=1"
        started = time.perf_counter()
        code, err = run_cli(["ablate", spec_path, "--storage", url], capsys)
        assert time.perf_counter() - started < 10
        assert_one_line_naming(code, err, "--storage", f"127.0.0.1:{port}", "timeout")
        # the default, for a URL that sets none
        started = time.perf_counter()
        argv = ["report", "--study", "x", "--storage", url.split("?")[0], "--out", tmp_path / "o"]
        code, err = run_cli(argv, capsys)
        assert storage.CONNECT_TIMEOUT_S - 1 < time.perf_counter() - started < 30
        assert_one_line_naming(code, err, "--storage", "timeout")


def test_the_command_itself_prints_no_traceback(tmp_path, spec_path):
    result = subprocess.run(
        [sys.executable, "-m", "mixlab.cli", "ablate", spec_path, "--storage", "/proc/x/y"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("mixlab ablate: --storage /proc/x/y")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


# ---- mixlab bench ------------------------------------------------------------------------

TINY = ["--sizes", "4x3x8x8", "--dtypes", "float32", "--impls", "reference", "--no-loss"]


@contextmanager
def immutable(folder: Path):
    folder.mkdir()
    subprocess.run(["chattr", "+i", folder], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)


def _out_cases(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a_file").write_text("x")
    return {
        "under /proc": Path("/proc/mixlab-test/out"),
        "onto a file": tmp_path / "a_file",
        "under a file": tmp_path / "a_file" / "out",
    }


@pytest.mark.parametrize("case", ["under /proc", "onto a file", "under a file", "immutable"])
@pytest.mark.parametrize("command", ["bench", "report"])
def test_unwritable_out_is_one_line(tmp_path, capsys, case, command):
    def run(out):
        args = TINY if command == "bench" else ["--bench", tmp_path / "none"]
        return run_cli([command, *args, "--out", out], capsys)

    if case == "immutable":
        with immutable(tmp_path / "locked") as folder:
            code, err = run(folder / "out")
        assert_one_line_naming(code, err, "--out", "locked")
        return
    out = _out_cases(tmp_path)[case]
    code, err = run(out)
    assert_one_line_naming(code, err, "--out", str(out))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--row-seconds", "nan"),
        ("--max-call-s", "nan"),
        ("--budget-s", "inf"),
        ("--threshold", "nan"),
        ("--sizes", "99999999x3x224x224"),
        ("--threads", "100000"),
    ],
)
def test_bench_numbers_are_checked(tmp_path, capsys, option, value):
    out = tmp_path / "out"
    code, err = run_cli(["bench", *TINY, f"{option}={value}", "--out", out], capsys)
    assert_one_line_naming(code, err, option)
    assert not out.exists()


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ([1, 2], "benchmarks"),
        ({"benchmarks": [{"params": None, "extra_info": {}}]}, "benchmarks[0]"),
        ({"benchmarks": {"a": 1}}, "benchmarks"),
        ({"benchmarks": ["x"]}, "benchmarks[0]"),
    ],
    ids=["a list", "params null", "benchmarks not a list", "a benchmark not an object"],
)
def test_bench_compare_on_malformed_json(tmp_path, capsys, doc, named):
    baseline = tmp_path / "benchmark.json"
    baseline.write_text(json.dumps(doc))
    code, err = run_cli(["bench", *TINY, "--compare", baseline, "--out", tmp_path / "o"], capsys)
    assert_one_line_naming(code, err, "--compare", named)


def test_bench_compare_on_non_numeric_csv(tmp_path, capsys):
    baseline = tmp_path / "mixing.csv"
    baseline.write_text(
        "op,impl,shape,batch,dtype,device,frac_copy,status\nmix,a,1,1,f,cpu,fast,ok\n"
    )
    code, err = run_cli(["bench", *TINY, "--compare", baseline, "--out", tmp_path / "o"], capsys)
    assert_one_line_naming(code, err, "--compare", "frac_copy", "'fast'")


# ---- mixlab report -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ([{"kernel": "mix"}], 'no "rows" list'),
        ({"rows": {"a": 1}}, 'no "rows" list'),
        ({"rows": [1, 2]}, "rows[0] lacks kernel"),
        ({"rows": [{"kernel": "mix", "backend": "torch"}]}, "rows[0] lacks dtype"),
    ],
    ids=["a list", "rows not a list", "rows not objects", "a row without fields"],
)
def test_report_equivalence_malformed(tmp_path, capsys, doc, named):
    path = tmp_path / "equivalence.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    argv = ["report", "--bench", tmp_path / "none", "--equivalence", path, "--out", out]
    code, err = run_cli(argv, capsys)
    assert_one_line_naming(code, err, "--equivalence", named)
    assert not out.exists()


def test_report_equivalence_non_numeric_error(tmp_path, capsys):
    row = dict.fromkeys(["kernel", "backend", "dtype", "case", "test"], "x")
    path = tmp_path / "equivalence.json"
    path.write_text(json.dumps({"rows": [{**row, "max_err": "big", "atol": 1e-5, "passed": 1}]}))
    argv = ["report", "--bench", tmp_path / "none", "--equivalence", path, "--out", tmp_path / "o"]
    code, err = run_cli(argv, capsys)
    assert_one_line_naming(code, err, "--equivalence", "max_err", "'big'")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("op,impl,shape,batch,dtype,median_ms,frac_copy,status\nmix,a,1,1,f,slow,1,ok\n", "'slow'"),
        ("op,impl,shape,batch,dtype,median_ms,frac_copy,status\nmix,a,1,one,f,1,1,ok\n", "'one'"),
        ("", "is empty"),
        (b"\xff\xfe\x00garbage", "not a CSV"),
    ],
    ids=["median_ms", "batch", "empty", "binary"],
)
def test_report_bench_csv_malformed(tmp_path, capsys, text, named):
    bench = tmp_path / "bench"
    bench.mkdir()
    path = bench / "mixing.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = ["report", "--bench", bench, "--equivalence", tmp_path / "none", "--out", tmp_path / "o"]
    code, err = run_cli(argv, capsys)
    assert_one_line_naming(code, err, "--bench", str(path), named)


def test_report_study_whose_configs_lack_initial_budget(tmp_path, capsys):
    import optuna
    from optuna.distributions import CategoricalDistribution

    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="old", storage=url, direction="maximize")
    for alpha in (0.0, 0.4):
        for seed in (0, 1):
            study.add_trial(
                optuna.trial.create_trial(
                    params={"alpha": alpha, "seed": seed},
                    distributions={
                        "alpha": CategoricalDistribution([0.0, 0.4]),
                        "seed": CategoricalDistribution([0, 1]),
                    },
                    value=0.5 + alpha / 10 + seed / 100 + 0.007 * alpha * seed,
                    user_attrs={"config": {"alpha": alpha, "seed": seed}},
                )
            )
    out = tmp_path / "out"
    argv = ["report", "--storage", url, "--bench", tmp_path / "none", "--out", out]
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "no trial names its initial budget" in (out / "report.md").read_text()


# ---- a real server: a missing database, a wrong password ---------------------------------


@pytest.fixture(scope="module")
def postgres_url():
    with pg_cluster() as url:
        yield url


def _guarded_role(url: str) -> str:
    """A role that must give its password (scram), on the test server; returns its URL
    with a wrong password."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS guarded")
        conn.execute("CREATE ROLE guarded LOGIN PASSWORD 'right-one'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
        rule = "host all guarded 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(rule + hba.read_text())  # first match wins
        conn.execute("SELECT pg_reload_conf()")
    host = dsn.split("@", 1)[1]
    return f"postgresql://guarded:wrong-one@{host}"


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["ablate", "report"])
def test_missing_database_and_wrong_password(tmp_path, spec_path, capsys, postgres_url, command):
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_db"
    for url, cause in (
        (missing, 'database "no_such_db" does not exist'),
        (_guarded_role(postgres_url), "password authentication failed"),
    ):
        if command == "ablate":
            argv = ["ablate", spec_path, "--storage", url]
        else:
            argv = ["report", "--study", "tiny", "--storage", url, "--out", tmp_path / "out"]
        code, err = run_cli(argv, capsys)
        assert_one_line_naming(code, err, "--storage", cause)
        assert "wrong-one" not in err
