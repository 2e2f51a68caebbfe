"""The commands of the embedded environment: env, exec, airflow, bootstrap, fetch-jars."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from sluice.cli.common import (
    _project_dir,
)


def cmd_env(args: argparse.Namespace) -> int:
    """Print ``export`` lines for the embedded Airflow (``eval "$(sluice env)"``).

    With ``--check-free SETTING``, first fail (exit 2, nothing printed) when the port that
    setting names is taken, so ``make mlflow-ui`` stops with a clear message.
    """
    import os
    import shlex

    from sluice.airflow.runtime.home import PortError, check_ports_free, embedded_env

    try:
        env = embedded_env(_project_dir())
        check_ports_free(args.check_free or (), env)
    except PortError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    for key in sorted(env):
        wanted = key.startswith(("AIRFLOW", "SLUICE_", "MLFLOW_", "GX_")) or key == "PATH"
        if wanted and (os.environ.get(key) != env[key] or args.all):
            print(f"export {key}={shlex.quote(env[key])}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    """Run a command in the embedded Airflow's environment (what ``eval "$(sluice env)"`` gives a shell).

    ``./sluice exec airflow dags trigger flights_delay__train`` needs no PATH or environment
    set-up: the locked environment's ``bin/`` comes first on PATH, and Airflow, MLflow and
    sluice find this project's home, database and ports.
    """
    import os

    from sluice.airflow.runtime.home import embedded_env

    command = list(args.command_args)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("sluice exec: name a command, e.g. `sluice exec airflow dags list`", file=sys.stderr)
        return 2
    env = embedded_env(_project_dir())
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - the user names the command, as with `env CMD`
    except OSError as exc:
        print(f"sluice exec: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaces this process


def cmd_airflow(args: argparse.Namespace) -> int:
    """Run the embedded Airflow under a supervisor that stops every component on Ctrl-C."""
    from sluice.airflow.runtime.home import PortError
    from sluice.airflow.runtime.supervise import run_standalone

    try:
        return run_standalone(_project_dir(), grace_seconds=args.grace)
    except PortError as exc:
        print(f"sluice: cannot start Airflow: {exc}", file=sys.stderr)
        return 2


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Migrate the Airflow database and the MLflow store, apply airflow_settings.yaml."""
    from sluice.airflow.runtime.home import bootstrap, embedded_env
    from sluice.services.tracking import init_store
    from sluice.spec.schema import json_schema

    project = _project_dir()
    for line in bootstrap(project):
        print(f"bootstrap: {line}")
    # Created and migrated here, once: tasks that did it concurrently broke the store for good.
    print(f"bootstrap: {init_store(embedded_env(project)['MLFLOW_TRACKING_URI'])}")
    schema = project / ".sluice" / "pipeline.schema.json"
    schema.parent.mkdir(parents=True, exist_ok=True)
    schema.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"bootstrap: JSON Schema for editors at {schema}")
    return 0


def cmd_fetch_jars(args: argparse.Namespace) -> int:
    """Fetch (or re-check) the pinned S3A jars Spark needs for an ``s3://`` storage root."""
    from sluice.services.spark_jars import S3AJarsError, default_jars_dir, fetch_s3a_jars

    folder = Path(args.dest) if args.dest else default_jars_dir(_project_dir())
    try:
        jars = fetch_s3a_jars(folder)
    except S3AJarsError as exc:
        print(f"sluice fetch-jars: {exc}", file=sys.stderr)
        return 1
    print(f"fetch-jars: {len(jars)} S3A jars verified in {folder}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The embedded environment's commands."""
    p = sub.add_parser("env", help="print export lines for the embedded Airflow, MLflow and sluice")
    p.add_argument("--all", action="store_true", help="also print values already set")
    p.add_argument(
        "--check-free",
        action="append",
        metavar="SETTING",
        help="fail if the port of this setting (e.g. SLUICE_MLFLOW_UI_PORT) is in use; repeatable",
    )
    p.set_defaults(func=cmd_env)
    p = sub.add_parser(
        "exec",
        help="run a command in the embedded Airflow's environment, e.g. `exec airflow dags trigger <pipeline>__train`",
    )
    p.add_argument("command_args", nargs=argparse.REMAINDER, metavar="COMMAND", help="the command and its arguments")
    p.set_defaults(func=cmd_exec)
    p = sub.add_parser("airflow", help="run the embedded Airflow (API server first); Ctrl-C or SIGTERM stops all of it")
    p.add_argument("--grace", type=float, default=20.0, help="seconds to stop before SIGKILL (default 20)")
    p.set_defaults(func=cmd_airflow)
    p = sub.add_parser("bootstrap", help="prepare the Airflow home and the MLflow store (migrate both)")
    p.set_defaults(func=cmd_bootstrap)
    p = sub.add_parser("fetch-jars", help="fetch the pinned, checksummed S3A jars Spark needs for s3:// storage")
    p.add_argument("--dest", help="folder for the jars (default: $SLUICE_S3A_JARS or <project>/.jars/s3a)")
    p.set_defaults(func=cmd_fetch_jars)
