"""Start and stop long-running processes as whole process groups."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
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


# --- finding what is left: by a tag in the environment, by session ----------------------------


def tagged_processes(variable: str, value: str, prefix: bool = False) -> dict[int, str]:
    """Live processes with ``variable=value`` in their environment: pid -> command line (200 characters).

    Every child inherits its parent's environment, so a tag set on a server finds everything it
    started. Zombies and this process are left out; processes not ours to read are skipped.

    Args:
        variable: The environment variable.
        value: Its value.
        prefix: Match every value that starts with ``value``.
    """
    import psutil

    found = {}
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            got = proc.environ().get(variable)
            hit = got is not None and (got.startswith(value) if prefix else got == value)
            if hit and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = " ".join(proc.cmdline())[:200]
        except psutil.Error:  # gone, or not ours to read
            continue
    return found


def session_processes(sessions: set[int]) -> dict[int, str]:
    """Live processes in one of ``sessions`` (by session id): pid -> command line.

    PostgreSQL writes its process titles over its environment, so a tag cannot find it; its
    session (the one its leader was started in) can.
    """
    import psutil

    found = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) in sessions and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = " ".join(proc.cmdline())[:200]
        except (psutil.Error, OSError):
            continue
    return found


def tagged(variable: str, value: str) -> list[str]:
    """Command lines of live processes with ``variable=value`` in their environment (:func:`tagged_processes`)."""
    return list(tagged_processes(variable, value).values())


def in_sessions(sessions: set[int]) -> list[str]:
    """Command lines of live processes in one of ``sessions`` (:func:`session_processes`)."""
    return list(session_processes(sessions).values())


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
