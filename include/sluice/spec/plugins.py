"""Entry points: how sluice finds its deploy targets, expectation types and step kinds, and a third party's.

A package adds a deploy target, an expectation type or a step kind by declaring an entry point in one of
these groups in its own ``pyproject.toml``; installing it is the whole change, no sluice
file is edited (see ``CONTRIBUTING.md``). sluice declares its own the same way.

- ``sluice.deploy_targets``: name -> a :class:`sluice.spec.targets.TargetSpec` (the target's
  settings model, its deploy step and its questions; its run-time class by import path).
- ``sluice.expectations``: type name -> an :class:`sluice.spec.expectations.ExpectationSpec`
  subclass whose ``type`` literal is that name.
- ``sluice.step_kinds``: kind name -> a :class:`sluice.plan.model.StepKind` (the config type
  the plan checks a step of that kind against, and its Airflow renderer by import path,
  imported only when a DAG is rendered). sluice's own kinds are built in
  (:data:`sluice.plan.model.STEP_KINDS`); this group holds other packages' only.

Discovery runs once per process (the spec models are built from it) and reads only package
metadata and the modules the entry points name.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, EntryPoints, entry_points
from typing import Any

#: Entry-point group of deploy targets.
DEPLOY_TARGETS_GROUP = "sluice.deploy_targets"
#: Entry-point group of expectation types.
EXPECTATIONS_GROUP = "sluice.expectations"
#: Entry-point group of step kinds (other packages'; sluice's own are built in).
STEP_KINDS_GROUP = "sluice.step_kinds"
#: sluice's own distribution: its entry points come first.
SLUICE_DIST = "sluice"


#: Group -> entry-point name -> distribution name and version, as :func:`discover` found them.
_OWNERS: dict[str, dict[str, str]] = {}


class PluginError(RuntimeError):
    """An entry point could not be loaded, or two distributions claim the same name."""


def _dist_of(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def _order(ep: EntryPoint) -> tuple[bool, str, str]:
    name = ep.dist.name if ep.dist is not None else ""
    return (name != SLUICE_DIST, name, ep.name)


@functools.cache
def _all_entry_points() -> EntryPoints:
    # One scan of the installed distributions' metadata for every group (each scan reads
    # every dist-info folder on sys.path); select(group=...) then picks from it.
    found = entry_points()
    return EntryPoints(ep for group in sorted(found.groups) for ep in found.select(group=group))


@functools.cache
def discover(group: str) -> dict[str, Any]:
    """Load every entry point of ``group``: name -> the object it names.

    sluice's own entry points come first, then other distributions' by distribution and
    name. The result is cached for the process (:func:`forget` starts over).

    Raises:
        PluginError: An entry point failed to import (the message names the distribution,
            the entry point and the cause), or two distributions use the same name.
    """
    found: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for ep in sorted(_all_entry_points().select(group=group), key=_order):
        dist = _dist_of(ep)
        if ep.name in found:
            raise PluginError(
                f"{group} '{ep.name}' is declared by two distributions, {owner[ep.name]} and {dist}: "
                f"uninstall one of them"
            )
        try:
            found[ep.name] = ep.load()
        except Exception as exc:
            raise PluginError(
                f"{group} '{ep.name}' of distribution {dist} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}; fix or uninstall {dist.split()[0]}"
            ) from exc
        owner[ep.name] = dist
    _OWNERS[group] = owner
    return found


def is_sluices_own(group: str, name: str) -> bool:
    """Whether sluice itself declares the entry point ``name`` of ``group`` (after :func:`discover`)."""
    return distribution(group, name).split()[0] == SLUICE_DIST


def distribution(group: str, name: str) -> str:
    """``"<name> <version>"`` of the distribution that declares ``name`` in ``group`` (after :func:`discover`).

    Returns "an unknown distribution" when :func:`discover` did not find it.
    """
    return _OWNERS.get(group, {}).get(name, "an unknown distribution")


def forget() -> None:
    """Drop what :func:`discover` found, so the next call scans again (a test's package on ``sys.path``)."""
    _all_entry_points.cache_clear()
    discover.cache_clear()
