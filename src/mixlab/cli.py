"""The `mixlab` command. Each subcommand lives in the module that owns its concept and
exposes `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

from mixlab import extras

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("mixlab.demo", "run the embedded default: digits study, bench, report"),
    "bench": ("mixlab.benchmarks.sweep", "throughput sweep of the mixing step and the loss"),
    "ablate": ("mixlab.studies.cli", "run an ablation study spec with Optuna"),
    "report": ("mixlab.report.cli", "write the comparison report (Markdown + HTML)"),
    "verify": ("mixlab.verify.cli", "check the ops (or --impl functions) against mixlab.reference"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        missing = extras.missing(name)
        if missing:  # its extra is not installed: a stand-in says which (mixlab.extras)
            module = "mixlab.extras"
            sp.set_defaults(_missing_extra=missing)
        importlib.import_module(module).add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


# Errors a user's input or machine can cause: one line and exit 2, never a traceback.
# Named lazily, from the modules a subcommand loaded, so `mixlab --help` stays light.
USER_ERRORS = (
    ("mixlab.studies.storage", "StorageError"),
    ("mixlab.native.build", "UnsafeCacheError"),
    ("optuna.exceptions", "StorageInternalError"),
    ("sqlalchemy.exc", "SQLAlchemyError"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    loaded = [getattr(sys.modules[m], n) for m, n in USER_ERRORS if m in sys.modules]
    return (ValueError, OSError, MemoryError, *loaded)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print(f"mixlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as err:
        # A chained error (SQLAlchemy's, Optuna's) says little; its cause says what failed.
        cause = err.__cause__ or err
        text = " ".join(str(err).split()) or type(err).__name__
        if cause is not err and str(cause):
            text += f" ({' '.join(str(cause).split())})"
        print(f"mixlab {args.command}: {type(err).__name__}: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
