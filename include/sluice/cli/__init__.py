"""``sluice`` command line, by audience.

- :mod:`sluice.cli.user`: the commands of people who write and run pipelines (lint, plan,
  status, stop, trigger-retrain, revalidate, the schema tools), listed first by ``--help``;
- :mod:`sluice.cli.dev`: the embedded environment (env, exec, airflow, bootstrap, fetch-jars);
- :mod:`sluice.cli.production`: the production kit (``production init|up|down|status|env``);
- :mod:`sluice.cli.entrypoints`: what containers run (the deployer pod, the model server).
"""

from __future__ import annotations

import argparse
import sys

from sluice.cli import dev, entrypoints, production, user
from sluice.cli.common import _report_spec_error
from sluice.cli.user import STATUS_OK, STATUS_SPEC_ERROR, STATUS_UNKNOWN, STATUS_WRONG
from sluice.settings import SettingsError
from sluice.spec.errors import SpecError
from sluice.spec.plugins import PluginError

__all__ = ["STATUS_OK", "STATUS_SPEC_ERROR", "STATUS_UNKNOWN", "STATUS_WRONG", "build_parser", "main"]

#: ``--help``'s groups, in the order it lists them.
GROUPS = (
    ("pipelines", user),
    ("embedded environment", dev),
    ("production kit", production),
    ("container entrypoints", entrypoints),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs): user commands first."""
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Declarative ML pipelines on Apache Airflow 3.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    epilog = []
    for title, group in GROUPS:
        before = set(sub.choices)
        group.add_commands(sub)
        epilog.append(f"{title}: " + ", ".join(name for name in sub.choices if name not in before))
    parser.epilog = "\n".join(epilog)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sluice`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as exc:
        return _report_spec_error(exc)
    except (SettingsError, PluginError) as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
