"""Named crash points, so fault-injection tests kill a process exactly where they mean to.

A step calls :func:`point` between two durable writes. Nothing happens unless the
environment names that point in ``SLUICE_FAULT_POINT``; then the process kills itself with
SIGKILL, as ``kill -9`` or a lost machine would, with no cleanup of any kind. With
``SLUICE_FAULT_ONCE`` set to a folder, the point fires once (a marker file is left there),
so the retry that follows runs through.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def point(name: str) -> None:
    """Die here (SIGKILL) if ``SLUICE_FAULT_POINT`` names this point."""
    if os.environ.get("SLUICE_FAULT_POINT") != name:
        return
    once = os.environ.get("SLUICE_FAULT_ONCE")
    if once:
        marker = Path(once) / name
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
