"""``sluice production init|up|down|status|env``: the production shape as a team's own service.

See :mod:`sluice.production` and the docs' "Production kit" page.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.cli.common import _project_dir

if TYPE_CHECKING:
    from sluice.production.envfile import Kit

#: Where ``--env`` defaults to: ``$SLUICE_KIT_ENV``, else ``./production.env``.
ENV_VARIABLE = "SLUICE_KIT_ENV"


def _kit(args: argparse.Namespace) -> Kit:
    from sluice.production.envfile import FILE_NAME, load

    return load(Path(args.env or os.environ.get(ENV_VARIABLE) or FILE_NAME))


def _only(args: argparse.Namespace) -> list[str] | None:
    if not args.only:
        return None
    return [name.strip() for item in args.only for name in item.split(",") if name.strip()]


def _say(line: str) -> None:
    print(f"sluice production: {line}", flush=True)


def print_where(kit: Kit) -> None:
    """The "where to look" table of a kit: URLs, credentials, logs, and how to stop it."""
    from sluice.production.parts import where_to_look

    rows = where_to_look(kit)
    width = max(len(what) for what, _, _ in rows)
    print("\nwhere to look:")
    for what, address, login in rows:
        print(f"  {what:<{width}}  {address}  ({login})")
    print(f"  {'stop it all':<{width}}  ./sluice production down --env {kit.path}")


def cmd_init(args: argparse.Namespace) -> int:
    """Write FOLDER/production.env with documented defaults and fresh secrets."""
    from sluice.production.envfile import KitError, init

    overrides = {}
    for item in args.set or ():
        name, sep, value = item.partition("=")
        if not sep:
            print(f"sluice production init: --set {item!r}: write NAME=VALUE", file=sys.stderr)
            return 2
        overrides[name.strip()] = value
    try:
        path = init(Path(args.folder), _project_dir(), overrides, force=args.force)
    except KitError as exc:
        print(f"sluice production init: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} (mode 0600: it holds secrets); read it, change ports or addresses, then:")
    print(f"  ./sluice production up --env {path}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Start the parts of this host (those not running yet)."""
    from sluice.production.envfile import KitError
    from sluice.production.supervise import up

    try:
        kit = _kit(args)
        up(kit, _only(args), say=_say)
    except KitError as exc:
        print(f"sluice production up: {exc}", file=sys.stderr)
        return 2
    print_where(kit)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the parts of this host; exit 1 if a process is left."""
    from sluice.production.envfile import KitError
    from sluice.production.supervise import down

    try:
        left = down(_kit(args), _only(args), say=_say)
    except KitError as exc:
        print(f"sluice production down: {exc}", file=sys.stderr)
        return 2
    if left:
        print("sluice production down: still alive:\n  " + "\n  ".join(left), file=sys.stderr)
        return 1
    _say("nothing left running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """One line per part; exit 0 only when every selected part runs here and answers."""
    from sluice.production.envfile import KitError
    from sluice.production.supervise import status

    try:
        kit = _kit(args)
        rows = status(kit, _only(args))
    except KitError as exc:
        print(f"sluice production status: {exc}", file=sys.stderr)
        return 2
    width = max(len(row.name) for row in rows)
    for row in rows:
        pid = f"pid {row.pid}" if row.pid else "-"
        ports = ",".join(map(str, row.ports)) or "-"
        print(f"{row.name:<{width}}  {row.state:<19}  {pid:<10}  port {ports}")
    if args.where:
        print_where(kit)
    return 0 if all(row.state == "running" for row in rows) else 3


def cmd_env(args: argparse.Namespace) -> int:
    """Print ``export`` lines of the Airflow components' environment (``eval "$(sluice production env)"``)."""
    import shlex

    from sluice.production.envfile import KitError
    from sluice.production.supervise import environment

    try:
        env = environment(_kit(args))
    except KitError as exc:
        print(f"sluice production env: {exc}", file=sys.stderr)
        return 2
    for key in sorted(env):
        print(f"export {key}={shlex.quote(env[key])}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``production`` command and its subcommands."""
    p = sub.add_parser("production", help="run the production shape on your hosts: init, up, down, status, env")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("init", help="write FOLDER/production.env: every variable, documented, fresh secrets")
    a.add_argument("folder", help="the kit's folder (its state and DAG folders go under it)")
    a.add_argument("--set", action="append", metavar="NAME=VALUE", help="a value of your own (a port...); repeatable")
    a.add_argument("--force", action="store_true", help="replace an existing file (new secrets)")
    a.set_defaults(func=cmd_init)
    for name, func, text in (
        ("up", cmd_up, "start the parts of this host that are not running; print where to look"),
        ("down", cmd_down, "stop the parts of this host (SIGTERM, SIGKILL after the grace period)"),
        ("status", cmd_status, "per part: running (pid, answering), not answering, stopped"),
        ("env", cmd_env, "print export lines of the Airflow components' environment"),
    ):
        a = actions.add_parser(name, help=text)
        a.add_argument("--env", help=f"the kit's environment file (default: ${ENV_VARIABLE}, else ./production.env)")
        if name != "env":
            a.add_argument("--only", action="append", metavar="PART,...", help="these parts only (names or groups)")
        if name == "status":
            a.add_argument("--where", action="store_true", help="also print where to look (URLs, credentials)")
        a.set_defaults(func=func)
