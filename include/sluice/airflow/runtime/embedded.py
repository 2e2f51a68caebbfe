"""The embedded Airflow: API server first, then the scheduler, DAG processor and triggerer.

``airflow standalone`` starts its four components at once. After a restart (a crash, a
reboot) the scheduler then queues the tasks it had before the API server answers, and each
task process dies on its first call to the Execution API (``httpx.ConnectError``, a log of
one line), which costs a try. This launcher migrates the database, starts the API server,
waits until its health endpoint answers, and only then starts the components that run
tasks. Like the standalone, it forces nothing else: the environment comes from
:func:`sluice.airflow.runtime.home.embedded_env` (LocalExecutor, SimpleAuthManager, SQLite).

Run it as ``python -m sluice.airflow.runtime.embedded`` in its own process group; every component is
a child in that group, each output line prefixed with the component's name. A component that
dies (a crash, an OOM kill) is started again, as systemd or Kubernetes would restart it; one
that dies more than :data:`MAX_RESTARTS` times within :data:`RESTART_WINDOW_SECONDS` stops
the launcher and its code is the exit code, so a supervisor sees a failure instead of a
half-running Airflow. SIGTERM, SIGINT or SIGHUP stops all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO

import requests
import tenacity

from sluice.settings import settings

#: The components started once the API server answers, in this order.
AFTER_API = ("scheduler", "dag-processor", "triggerer")
#: A component is restarted at most this many times within the window, then the launcher stops.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 600.0


class ComponentExited(RuntimeError):
    """A component of the embedded Airflow exited (its name and code are in the message)."""


#: One line at a time on the launcher's output: it is written by a thread per component and by
#: the launcher itself, and ``print`` writes a line's text and its newline in two calls, so two
#: threads could splice one line into another (a "started" line lost at the end of a log line).
_OUTPUT = threading.Lock()


def emit(name: str, text: str) -> None:
    """Write ``<name> | <text>`` as one whole line on the launcher's output."""
    with _OUTPUT:
        sys.stdout.write(f"{name:13} | {text}\n")
        sys.stdout.flush()


def _say(text: str) -> None:
    emit("sluice", text)


def _pump(name: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        emit(name, raw.decode("utf-8", errors="replace").rstrip())


class Components:
    """The Airflow components this launcher started, each a child process in its group."""

    def __init__(self, env: dict[str, str]) -> None:
        """Prepare to start components with ``env``."""
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, list[float]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start ``airflow <name>`` with its output prefixed by ``name``."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", name],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
        self.procs[name] = proc
        _say(f"started {name} (pid {proc.pid})")
        return proc

    def exited(self) -> tuple[str, int] | None:
        """The first component found exited, with its code."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def restart(self, name: str, code: int) -> bool:
        """Start ``name`` again after it exited with ``code``; False once it has died too often."""
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < RESTART_WINDOW_SECONDS]
        if len(recent) >= MAX_RESTARTS:
            _say(f"{name} exited with code {code} after {len(recent)} restarts: giving up")
            return False
        self.restarts[name] = [*recent, now]
        _say(f"{name} exited with code {code}; restarting it (restart {len(recent) + 1} of at most {MAX_RESTARTS})")
        self.start(name)
        return True

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM every component, SIGKILL what is left after the grace period."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + grace_seconds
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


#: What the Airflow API server must answer before a task is handed out (paths under its base URL).
#: ``/execution/health`` is there for its side effect: the Execution API (a Cadwyn app) builds its
#: versioned models and routes on its first request, on the server's event loop, and answers
#: nothing meanwhile (8 s on two lightly loaded cores, more on busy ones). Left to the first
#: task's ``PATCH .../run``, that request outlasts the task SDK's 5 s timeout (a retry, seconds
#: lost), and on a busy host can outlast its five tries too: the task fails before it starts.
API_SERVER_READY_PATHS = ("/api/v2/monitor/health", "/execution/health")


def api_health_url(env: dict[str, str]) -> str:
    """The API server's health endpoint on this machine."""
    return f"http://localhost:{env['AIRFLOW__API__PORT']}{API_SERVER_READY_PATHS[0]}"


def api_ready_urls(env: dict[str, str]) -> list[str]:
    """What the API server on this machine answers once a task can be handed out (:data:`API_SERVER_READY_PATHS`)."""
    return [f"http://localhost:{env['AIRFLOW__API__PORT']}{path}" for path in API_SERVER_READY_PATHS]


def wait_until_answers(url: str, timeout: float, alive: Callable[[], None]) -> None:
    """Poll ``url`` until it answers 200, checking ``alive`` (which raises) between tries.

    Raises:
        TimeoutError: No 200 within ``timeout`` seconds.
    """

    def answers() -> bool:
        alive()
        try:
            return requests.get(url, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(1),
        retry=tenacity.retry_if_result(lambda ok: not ok),
        retry_error_callback=lambda state: False,
    )
    if not retrying(answers):
        raise TimeoutError(f"the API server did not answer {url} within {timeout:.0f}s") from None


def wait_until_ready(env: dict[str, str], timeout: float, alive: Callable[[], None]) -> None:
    """Wait until the API server answers every :func:`api_ready_urls`, within ``timeout`` in all.

    Raises:
        TimeoutError: One did not answer in time.
    """
    deadline = time.monotonic() + timeout
    for url in api_ready_urls(env):
        wait_until_answers(url, max(1.0, deadline - time.monotonic()), alive)


def run(env: dict[str, str], grace_seconds: float = 20.0, api_timeout: float | None = None) -> int:
    """Run the embedded Airflow until a component exits or this process gets SIGTERM/SIGINT.

    Args:
        env: The environment of every component (see :func:`sluice.airflow.runtime.home.embedded_env`).
        grace_seconds: Time the components get to stop before SIGKILL.
        api_timeout: How long the API server gets to answer before the launcher gives up
            (default ``SLUICE_API_START_TIMEOUT``: a cold start on two busy cores takes 20-60 s).

    Returns:
        0 when stopped by a signal; otherwise the exit code of the component that died too
        often (1 when the API server never answered or the database migration failed).
    """
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    components = Components(env)
    try:
        _say("migrating the Airflow database")
        migrated = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, check=False
        )
        if migrated.returncode != 0:
            _say(f"airflow db migrate failed:\n{migrated.stdout[-2000:]}{migrated.stderr[-4000:]}")
            return 1
        api = components.start("api-server")

        def api_alive() -> None:
            if api.poll() is not None:
                raise ComponentExited(f"api-server exited with code {api.returncode} before it answered")

        try:
            timeout = settings().api_start_timeout if api_timeout is None else api_timeout
            wait_until_ready(env, timeout, api_alive)
        except (ComponentExited, TimeoutError) as exc:
            _say(f"{exc}; not starting {', '.join(AFTER_API)}")
            return 1
        _say("the API server answers; starting the components that run tasks")
        for name in AFTER_API:
            components.start(name)
        _say("Airflow is ready")
        while True:
            gone = components.exited()
            if gone is not None and not components.restart(*gone):
                return gone[1] or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            components.stop(grace_seconds)
            _say("stopped")


def main() -> None:
    """Entry point of ``python -m sluice.airflow.runtime.embedded`` (environment from ``os.environ``)."""
    sys.exit(run(dict(os.environ)))


if __name__ == "__main__":
    main()
