"""``sluice production up|down|status``: a kit's parts as background processes of this host.

Each part runs in a session (and process group) of its own with ``SLUICE_KIT_TAG`` in its
environment (inherited by everything it starts: task processes, Spark executors, model
servers), its output in ``<state>/logs/<part>.log`` and its pid in ``<state>/run/<part>.json``
(with the process's start time, so a reused pid is never taken for the part). ``up`` refuses
before starting anything when a port it needs is taken; ``down`` stops each part's group
(SIGTERM, then SIGKILL after the grace period), then whatever still carries its tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sluice.production.envfile import Kit, KitError
from sluice.production.parts import Part, parts, select, tcp_open
from sluice.services import processes

#: In the environment of every process the kit starts: ``<kit stamp>/<part>``.
TAG = "SLUICE_KIT_TAG"
Say = Callable[[str], None]


def stamp(kit: Kit) -> str:
    """What every tag of this kit starts with: a digest of its state folder."""
    return hashlib.sha256(str(kit.state.resolve()).encode()).hexdigest()[:16]


def tag(kit: Kit, name: str) -> str:
    """The tag of part ``name``."""
    return f"{stamp(kit)}/{name}"


def log_file(kit: Kit, name: str) -> Path:
    """Where part ``name`` writes its output."""
    return kit.state / "logs" / f"{name}.log"


def pid_file(kit: Kit, name: str) -> Path:
    """Where the kit records part ``name``'s process."""
    return kit.state / "run" / f"{name}.json"


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def running(kit: Kit, name: str) -> int | None:
    """The pid of part ``name`` if the process the kit started for it is alive."""
    import psutil

    try:
        record = json.loads(pid_file(kit, name).read_text())
        proc = psutil.Process(int(record["pid"]))
        alive = proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - float(record["created"])) < 1.0
    except (OSError, ValueError, KeyError, psutil.Error):
        return None
    return proc.pid if alive else None


def spawn(kit: Kit, part: Part) -> subprocess.Popen[bytes]:
    """Start ``part`` in a session of its own, tagged, output to its log; record its pid."""
    import psutil

    launch = part.launch()
    if launch.cwd is not None:  # a host that runs the scheduler alone has no Airflow home yet
        launch.cwd.mkdir(parents=True, exist_ok=True)
    log = log_file(kit, part.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n--- sluice production up {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(launch.cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            launch.cmd,
            env={**launch.env, TAG: tag(kit, part.name)},
            cwd=launch.cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = {"pid": proc.pid, "created": psutil.Process(proc.pid).create_time(), "command": launch.cmd}
    pid_file(kit, part.name).parent.mkdir(parents=True, exist_ok=True)
    pid_file(kit, part.name).write_text(json.dumps(record) + "\n")
    return proc


def taken_ports(kit: Kit, todo: list[Part]) -> list[str]:
    """Why the ports of ``todo`` cannot be had: taken by another process, or named twice."""
    from sluice.airflow.runtime.home import port_in_use

    problems: list[str] = []
    seen: dict[int, str] = {}
    for part in todo:
        for label, port in part.listens:
            variable = label.split()[0]
            if port in seen:
                problems.append(f"{kit.where(variable)}: {label} and {seen[port]} are both port {port}: change one")
            elif port_in_use(port):
                problems.append(
                    f"{kit.where(variable)}: port {port} ({label}, part {part.name}) is already in use by another "
                    f"process: stop it (`ss -ltnp 'sport = :{port}'` shows it) or choose another port for {variable}"
                )
            seen[port] = label
    return problems


def wait_needs(part: Part, timeout: float, say: Say) -> None:
    """Wait until every server ``part`` needs accepts connections (it may be on another host).

    Raises:
        KitError: One did not within ``timeout`` seconds.
    """
    for what, host, port in part.needs:
        deadline = time.monotonic() + timeout
        if not tcp_open(host, port):
            say(f"{part.name}: waiting for {what} at {host}:{port}")
        while not tcp_open(host, port):
            if time.monotonic() > deadline:
                raise KitError(f"{part.name} needs {what} at {host}:{port}, which did not answer in {timeout:.0f}s")
            time.sleep(1)


def wait_ready(kit: Kit, started: dict[str, tuple[Part, subprocess.Popen[bytes]]], timeout: float) -> None:
    """Wait until every started part answers.

    Raises:
        KitError: A part exited, or did not answer within ``timeout`` seconds (its log's tail).
    """
    deadline = time.monotonic() + timeout
    waiting = dict(started)
    while waiting:
        for name, (part, proc) in list(waiting.items()):
            if proc.poll() is not None:
                log = log_file(kit, name)
                raise KitError(f"{name} exited with code {proc.returncode}; the end of {log}:\n{tail(log)}")
            if part.ready():
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            log = log_file(kit, next(iter(waiting)))
            raise KitError(f"{next(iter(waiting))} did not answer in {timeout:.0f}s; the end of {log}:\n{tail(log)}")
        time.sleep(0.5 if waiting else 0)


def up(kit: Kit, only: list[str] | None = None, say: Say = print) -> list[str]:
    """Start the parts of this host that are not running yet, wave by wave; wait until each answers.

    Returns:
        The names of the parts started now (parts already running are left alone).

    Raises:
        KitError: A port is taken (before anything starts), a part failed to start, or a
            server it needs did not answer. Parts started before a failure keep running.
    """
    registry = parts(kit)
    todo = []
    for name in select(kit, only):
        pid = running(kit, name)
        if pid:
            say(f"{name}: already running (pid {pid})")
        else:
            todo.append(registry[name])
    problems = taken_ports(kit, todo)
    if problems:
        raise KitError("nothing started:\n" + "\n".join(problems))
    timeout = float(kit.number("SLUICE_KIT_START_TIMEOUT"))
    for wave in sorted({part.wave for part in todo}):
        began = time.monotonic()
        started = {}
        for part in (p for p in todo if p.wave == wave):
            wait_needs(part, timeout, say)
            part.prepare()
            started[part.name] = (part, spawn(kit, part))
        wait_ready(kit, started, timeout)
        for name, (part, proc) in started.items():
            part.settle()
            say(f"{name}: running (pid {proc.pid}, answered in {time.monotonic() - began:.0f}s)")
    return [part.name for part in todo]


def _record_pid(kit: Kit, name: str) -> int | None:
    try:
        return int(json.loads(pid_file(kit, name).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _kill(pids: list[int]) -> None:
    import psutil

    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
            found[-1].kill()
        except psutil.Error:
            continue
    psutil.wait_procs(found, timeout=10)


def stop_part(kit: Kit, name: str, part: Part | None, grace: float) -> list[str]:
    """Stop part ``name``: SIGTERM its group, SIGKILL after ``grace``, then whatever still carries its tag.

    Returns:
        Command lines of its processes still alive after that (none, normally).
    """
    leader = _record_pid(kit, name)
    if running(kit, name) and leader:
        if part is not None:
            part.before_stop()
        processes.stop_group(leader, grace_seconds=grace)
    sessions = {leader} if leader else set()

    def rest() -> dict[int, str]:
        return {**processes.tagged_processes(TAG, tag(kit, name)), **processes.session_processes(sessions)}

    _kill(list(rest()))
    left = processes.wait_until_empty(lambda: list(rest().values()), wait=10)
    if not left:
        pid_file(kit, name).unlink(missing_ok=True)
    return left


def down(kit: Kit, only: list[str] | None = None, say: Say = print) -> list[str]:
    """Stop the parts of this host, last started first.

    Without ``only``, every part with a pid file is stopped, then every process still carrying
    the kit's tag (a model server a deploy task started, say).

    Returns:
        Command lines of processes still alive (an empty list: nothing is left).
    """
    registry = parts(kit)
    names = select(kit, only)
    if only is None:  # also what was started before SLUICE_KIT_PARTS was edited
        recorded = {p.stem for p in (kit.state / "run").glob("*.json")}
        names = [n for n in registry if n in recorded or n in names] + sorted(recorded - set(registry))
    grace = float(kit.number("SLUICE_KIT_GRACE_SECONDS"))
    left: list[str] = []
    for name in reversed(names):
        if _record_pid(kit, name) is None:
            continue
        began = time.monotonic()
        remaining = stop_part(kit, name, registry.get(name), grace)
        say(
            f"{name}: stopped in {time.monotonic() - began:.1f}s" + (f"; STILL ALIVE: {remaining}" if remaining else "")
        )
        left += remaining
    if only is None:
        strays = processes.tagged_processes(TAG, stamp(kit) + "/", prefix=True)
        if strays:
            say(f"stopping {len(strays)} process(es) the parts started: " + "; ".join(strays.values()))
            _kill(list(strays))
        left += processes.wait_until_empty(
            lambda: list(processes.tagged_processes(TAG, stamp(kit) + "/", prefix=True).values()), wait=10
        )
    return left


@dataclass(frozen=True)
class PartStatus:
    """What ``status`` says of one part.

    Attributes:
        name: The part.
        state: ``running`` (started here, answering), ``not answering`` (started here, silent),
            ``stopped`` (not running here, not answering), or ``answering elsewhere``
            (not started here, but its address answers: another host or a managed service).
        pid: The pid of its process on this host, if running.
        ports: Its ports.
    """

    name: str
    state: str
    pid: int | None
    ports: tuple[int, ...]


def status(kit: Kit, only: list[str] | None = None) -> list[PartStatus]:
    """The state of each selected part."""
    registry = parts(kit)
    found = []
    for name in select(kit, only):
        part, pid = registry[name], running(kit, name)
        answering = part.ready()
        if pid:
            state = "running" if answering else "not answering"
        else:
            state = "answering elsewhere" if answering else "stopped"
        found.append(PartStatus(name, state, pid, tuple(port for _, port in part.listens)))
    return found


def leftovers(kit: Kit, sessions: set[int]) -> list[str]:
    """Command lines of live processes tagged by this kit or in one of ``sessions`` (the parts' leaders)."""
    tagged = processes.tagged_processes(TAG, stamp(kit) + "/", prefix=True)
    return sorted({**tagged, **processes.session_processes(sessions)}.values())


def sessions(kit: Kit) -> set[int]:
    """The session ids (leader pids) of the parts recorded in the state folder."""
    return {pid for p in (kit.state / "run").glob("*.json") if (pid := _record_pid(kit, p.stem))}


def environment(kit: Kit) -> dict[str, str]:
    """What ``sluice production env`` prints: the Airflow components' environment (as the kit starts them)."""
    from sluice.production.parts import airflow_env

    return {k: v for k, v in airflow_env(kit).items() if os.environ.get(k) != v}
