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
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sluice.settings import settings

#: How long a held process waits for its release before going on by itself.
HOLD_LIMIT_SECONDS = 3600.0


def point(name: str) -> None:
    """Die here (SIGKILL) if ``SLUICE_FAULT_POINT`` names this point; wait here if ``SLUICE_FAULT_HOLD`` does."""
    env = settings()
    hold = name in env.fault_holds
    if env.fault_point != name and not hold:
        return
    once = env.fault_once
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
