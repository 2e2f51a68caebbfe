"""Named crash points, so fault-injection tests kill a process exactly where they mean to.

A step calls :func:`point` between two durable writes. Nothing happens unless the
environment names that point in ``SLUICE_FAULT_POINT``; then the process kills itself with
SIGKILL, as ``kill -9`` or a lost machine would, with no cleanup of any kind. With
``SLUICE_FAULT_ONCE`` set to a folder, the point fires once (a marker file is left there),
so the retry that follows runs through.

``SLUICE_FAULT_HOLD=<name>[,<name>...]`` (with ``SLUICE_FAULT_ONCE``) pauses there instead: the process
writes ``<folder>/<name>.held`` (its pid) and waits until ``<folder>/<name>.release``
exists, so a test can kill other processes (the scheduler, the whole Airflow) while a task
is known to be mid-step, without sleeping in the hope of landing in the window.

These are test machinery, not settings: none of them is read unless ``SLUICE_TEST_FAULTS=1``
(the test suite sets it), and the product's settings object (:mod:`sluice.settings`, the docs'
configuration table) does not list them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: How long a held process waits for its release before going on by itself.
HOLD_LIMIT_SECONDS = 3600.0


#: The test-only switch: without it no fault variable is read.
SWITCH = "SLUICE_TEST_FAULTS"


class FaultSettings(BaseSettings):
    """The fault-injection variables (read only when :data:`SWITCH` is ``1``)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True)

    point: str | None = Field(default=None, validation_alias="SLUICE_FAULT_POINT")
    hold: str = Field(default="", validation_alias="SLUICE_FAULT_HOLD")
    once: Path | None = Field(default=None, validation_alias="SLUICE_FAULT_ONCE")

    @property
    def holds(self) -> list[str]:
        """The points named in ``SLUICE_FAULT_HOLD``."""
        return [p for p in self.hold.split(",") if p]


def point(name: str) -> None:
    """Die here (SIGKILL) if ``SLUICE_FAULT_POINT`` names this point; wait here if ``SLUICE_FAULT_HOLD`` does.

    A no-op unless ``SLUICE_TEST_FAULTS=1``.
    """
    if os.environ.get(SWITCH) != "1":
        return
    env = FaultSettings()
    hold = name in env.holds
    if env.point != name and not hold:
        return
    once = env.once
    if once:
        marker = once / name
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    if hold and once:
        _hold(Path(once), name)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _hold(folder: Path, name: str) -> None:
    held = folder / f"{name}.held"
    partial = held.with_suffix(".tmp")
    partial.write_text(str(os.getpid()))
    partial.rename(held)
    release = folder / f"{name}.release"
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
