"""Start and stop long-running processes as whole process groups."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def start(
    cmd: Sequence[str], log_file: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session so it and its children can be stopped together."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def exit_on_sigterm() -> None:
    """Make SIGTERM end this process like Ctrl-C does: through its ``finally`` blocks.

    Python's default SIGTERM kills the process without running ``finally`` or ``with`` exits,
    so a bench or demo stopped by its caller (a CI timeout, ``kill``, systemd) would leave the
    model servers, MLflow servers and Airflow it started running. After this, SIGTERM raises
    ``SystemExit(143)`` in the main thread and the cleanup runs. Call it from ``main`` only.
    """
    signal.signal(signal.SIGTERM, _exit_143)


def _exit_143(signum: int, frame: object) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (zombies count as gone)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def stop_group(pid: int, grace_seconds: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL whatever is left after the grace period."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        # The leader is gone (already reaped) but its group may live on: `start` made the
        # group with the leader's pid as its id.
        pgid = pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
