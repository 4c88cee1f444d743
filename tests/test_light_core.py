"""The light core: the ops import none of the commands' packages (nor triton when no
Triton kernel runs), a command whose extra is missing names it, and mixlab.extras lists
what pyproject.toml's extras install."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from mixlab import extras

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("triton", "scipy", "pandas", "optuna", "sklearn", "matplotlib", "seaborn", "timm")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_ops_on_cpu_import_no_heavy_package():
    done = _python(
        f"""
        import sys
        import torch
        import mixlab

        x, y = torch.randn(8, 3, 4, 4), torch.arange(8) % 5
        perm = torch.tensor([1, 2, 3, 0, 5, 4, 7, 6])
        mixlab.mix_(x, perm, 0.3)
        mixlab.mix(x, perm, torch.rand(8))
        mixlab.cutmix_(x, perm, (0, 2, 1, 3))
        out = mixlab.Mixup(0.4, cutmix_alpha=1.0, seed=0)(x, y)
        out = mixlab.Mixup(0.4, mode="elem", seed=0)(x, y)
        logits = torch.randn(8, 5, requires_grad=True)
        loss = mixlab.mixup_cross_entropy(logits, out.y_a, out.y_b, out.lam, label_smoothing=0.1)
        loss.backward()
        mixlab.soft_cross_entropy(logits, out.soft_targets(5)).backward()
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_command_without_its_extra_names_it_and_the_others_still_run():
    done = _python(
        """
        import sys
        sys.modules["optuna"] = None  # as if mixlab[ablate] were not installed
        from mixlab.cli import main
        print("rc", main(["ablate", "ablations/digits_demo.toml", "--workers", "2"]))
        main(["bench", "--help"])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        "mixlab ablate: needs the [ablate] extra (optuna not installed): "
        "pip install 'mixlab[ablate]'"
    ]
    assert done.stdout.startswith("rc 2\n")
    assert "usage: mixlab bench" in done.stdout


def test_a_command_s_options_reach_the_message_not_argparse():
    done = _python(
        """
        import sys
        sys.modules["pandas"] = None  # as if mixlab[bench] were not installed
        from mixlab.cli import main
        sys.exit(main(["bench", "--quick", "--sizes", "4x3x8x8", "-h"]))
        """
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mixlab bench: needs the [bench] extra (pandas not installed): pip install 'mixlab[bench]'"
    ]


def test_every_command_with_everything_installed_has_its_own_parser():
    assert all(extras.missing(command) is None for command in extras.COMMAND_EXTRAS)


def _distribution(requirement: str) -> str:
    return re.split(r"[\[=<>~;! ]", requirement, maxsplit=1)[0].lower()


IMPORT_NAMES = {"scikit-learn": "sklearn"}


@pytest.mark.parametrize("extra", ["bench", "ablate", "report"])
def test_extras_table_matches_pyproject(extra):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = {
        IMPORT_NAMES.get(d, d) for d in map(_distribution, project["optional-dependencies"][extra])
    }
    assert installed == set(extras.EXTRAS[extra])
    core = {_distribution(r) for r in project["dependencies"]}
    assert core == {"torch", "triton", "numpy"}
    assert project["optional-dependencies"]["all"] == ["mixlab[bench,ablate,report]"]
