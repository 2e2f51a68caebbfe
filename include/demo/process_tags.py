"""Processes found by a tag in their environment (inherited by every child they start).

The production harness (:mod:`demo.production_stack`) and the fault tests
(``tests/faults/kill.py``) tag what they start, then prove nothing of it is left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import psutil


def tagged(variable: str, value: str) -> list[str]:
    """Command lines (first 200 characters) of live processes with ``variable=value`` in their environment.

    Zombies and this process are left out; processes not ours to read are skipped.
    """
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(variable) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(" ".join(proc.cmdline())[:200])
        except psutil.Error:  # gone, or not ours to read
            continue
    return found


def in_sessions(sessions: set[int]) -> list[str]:
    """Command lines of live processes in one of ``sessions`` (by session id).

    PostgreSQL writes its process titles over its environment, so a tag cannot find it;
    its session (the one its leader was started in) can.
    """
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) in sessions and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(" ".join(proc.cmdline())[:200])
        except (psutil.Error, OSError):
            continue
    return found


def wait_until_empty(find: Callable[[], list[str]], wait: float = 30.0) -> list[str]:
    """Call ``find`` until it comes back empty, for up to ``wait`` seconds; return its last answer (sorted).

    A child that watches its parent (Spark's JVM watches the Python driver) needs a moment to
    notice that the parent is gone.
    """
    deadline = time.monotonic() + wait
    while True:
        left = sorted(set(find()))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
