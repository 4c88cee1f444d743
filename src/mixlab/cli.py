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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
