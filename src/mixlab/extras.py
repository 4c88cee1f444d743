"""Which optional extra each `mixlab` command needs, and the message when it is missing.

`pip install mixlab` brings only what the ops need (torch, its triton, numpy); the
commands need more, installed as extras (pyproject.toml's optional-dependencies, which
list the same packages as EXTRAS here). A command whose extra is not installed is
registered with this module's `add_arguments` / `run`, which say in one line which extra
to install and exit 2; nothing of the command is imported before that.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

# extra -> the modules it brings (import names) that mixlab imports
EXTRAS = {
    "bench": ("pandas", "tqdm", "timm", "torchvision"),
    "ablate": ("optuna", "sqlalchemy", "psycopg", "sklearn", "mlxtend", "tqdm", "torchvision"),
    "report": (
        "pandas",
        "scipy",
        "seaborn",
        "matplotlib",
        "tqdm",
        "optuna",
        "sqlalchemy",
        "psycopg",
    ),
}
EXTRAS["all"] = tuple(dict.fromkeys(m for extra in EXTRAS.values() for m in extra))
# command -> the extra it needs; `verify` builds its tables with pandas, as bench does
COMMAND_EXTRAS = {
    "demo": "all",
    "bench": "bench",
    "ablate": "ablate",
    "report": "report",
    "verify": "bench",
}


def missing(command: str) -> str | None:
    """None when `command`'s extra is installed, else the one-line message to print."""
    extra = COMMAND_EXTRAS.get(command)
    absent = [m for m in EXTRAS.get(extra, ()) if not _importable(m)]
    if not absent:
        return None
    return (
        f"mixlab {command}: needs the [{extra}] extra ({', '.join(absent)} not installed): "
        f"pip install 'mixlab[{extra}]'"
    )


def _importable(module: str) -> bool:
    # find_spec looks the package up without importing it (None: absent or blocked)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The stand-in's parser: takes the command's arguments, options and -h included,
    unread (no argument starts with a NUL prefix), so that `run` can say what is missing."""
    parser.prefix_chars = "\0"
    parser.add_argument("arguments", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print(args._missing_extra, file=sys.stderr)
    return 2
