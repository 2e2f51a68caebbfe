"""Serve the champion: the ``local`` target runs the model server as a local process.

The server logs its predictions to the pipeline's storage (``--storage-root``, with an object
store's keys in its environment) and exports ``/metrics``; see :mod:`sluice.services.serving`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.services import faults, processes
from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.spec.models import LOCAL
from sluice.steps.records import (
    LocalDeployment,
    LocalDeployResult,
    ServingCheck,
    ServingStatus,
    SmokeCheck,
    decode,
    encode,
)

#: The record of what is served now, under ``deploy/``.
CURRENT = "current.json"

log = logging.getLogger(__name__)


class DeployFailed(RuntimeError):
    """The new server did not become healthy; the previous one keeps serving."""


def http_json(url: str, payload: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """GET (or POST ``payload`` as JSON) and return status and decoded body (JSON or text).

    Raises:
        OSError: Nothing answered (requests' connection errors and timeouts are OSErrors).
    """
    import requests

    if not url.startswith("http://"):
        raise ValueError(f"only http:// URLs are used here, got {url}")
    resp = requests.request("GET" if payload is None else "POST", url, json=payload, timeout=timeout)
    body = resp.text
    return resp.status_code, resp.json() if body.strip().startswith(("{", "[")) else body


def current_deployment(store: PipelineStore) -> dict[str, Any] | None:
    """The record of what is served now as JSON (``deploy/current.json``), or None."""
    record = store.json.read_or_none(store.keys.deploy(CURRENT))
    return dict(record) if record is not None else None


def recorded_deployment(store: PipelineStore) -> LocalDeployment | None:
    """The record of what is served now, typed, or None."""
    found = current_deployment(store)
    return decode(LocalDeployment, found) if found is not None else None


@dataclass(frozen=True)
class ServerProcess:
    """A ``sluice serve`` process found on this machine.

    Attributes:
        pid: Process id (leader of its own process group).
        pipeline: ``--pipeline`` it was started with.
        version: ``--version`` it serves.
        host: Interface of its public port.
        port: Its public (shared) port.
        project: The project folder it was started in (its working directory), or '' if unknown.
    """

    pid: int
    pipeline: str
    version: str
    host: str
    port: int
    project: str = ""


def _arg(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1] if flag in cmd[:-1] else ""


def servers_on(host: str, port: int, project: Path | None = None) -> list[ServerProcess]:
    """Every ``sluice serve`` process bound (or binding) to ``host:port``, recorded or not.

    Found from the process table, not from records: a deploy killed after it started a
    server has no record of it, and this still finds it.

    Args:
        host: Interface of the public port.
        port: The public port.
        project: Only the servers started in this project folder (default: every one).
    """
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status", "cwd"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or "sluice.cli" not in cmd or "serve" not in cmd:
            continue
        if _arg(cmd, "--port") == str(port) and _arg(cmd, "--host") == host:
            cwd = str(proc.info["cwd"] or "")
            server = ServerProcess(proc.info["pid"], _arg(cmd, "--pipeline"), _arg(cmd, "--version"), host, port, cwd)
            if project is None or _same_folder(cwd, project):
                found.append(server)
    return sorted(found, key=lambda s: s.pid)


def _same_folder(a: str, b: Path) -> bool:
    return bool(a) and os.path.realpath(a) == os.path.realpath(b)


def foreign_servers(host: str, port: int, project: Path) -> list[ServerProcess]:
    """Model servers on ``host:port`` that another sluice project started.

    The public port is shared with ``SO_REUSEPORT`` (zero-downtime switches), so the kernel
    would let a second instance bind it too and split callers between two projects' models.
    """
    return [s for s in servers_on(host, port) if not _same_folder(s.project, project)]


def reconcile_local(
    host: str, port: int, keep: set[int], log: Any = None, project: Path | None = None
) -> list[ServerProcess]:
    """Stop every model server on ``host:port`` whose pid is not in ``keep``.

    Args:
        host: Interface of the public port.
        port: The public port.
        keep: Pids to leave running.
        log: Called with a line per server stopped.
        project: Only this project's servers (another instance's are never stopped).

    Returns:
        The servers stopped (orphans of a crashed deploy, or retired ones).
    """
    stopped = []
    for server in servers_on(host, port, project):
        if server.pid in keep:
            continue
        processes.stop_group(server.pid)
        stopped.append(server)
        if log is not None:
            log(f"stopped model server pid {server.pid} (v{server.version}) on {host}:{port}: no record owns it")
    return stopped


def _answering_version(state: LocalDeployment) -> str | None:
    """The version the recorded process says it serves (on its private port), or None."""
    if not processes.alive(state.pid):
        return None
    try:
        status, body = http_json(f"http://{state.host}:{state.admin_port}/sluice/info", timeout=3)
    except OSError:
        return None
    return str(body.get("version")) if status == 200 and isinstance(body, dict) else None


def _healthy(state: LocalDeployment) -> bool:
    return _answering_version(state) == state.version


@dataclass(frozen=True)
class LocalServing:
    """What is really served on a local target's port, checked, not just read from the record.

    Attributes:
        recorded: ``deploy/current.json``, or None.
        answering: The version the recorded process answers with (None: dead or silent).
        unrecorded: Servers on the port that no record owns.
    """

    recorded: dict[str, Any] | None
    answering: str | None
    unrecorded: list[ServerProcess] = field(default_factory=list)
    project: str = ""

    @property
    def healthy(self) -> bool:
        """The recorded version answers and nothing else holds the port."""
        return self.recorded is not None and self.answering == str(self.recorded["version"]) and not self.unrecorded

    def describe(self) -> list[str]:
        """Lines for ``sluice status``."""
        lines = []
        dep = self.recorded
        if dep is None:
            lines.append("deployed: nothing")
        elif self.answering == str(dep["version"]):
            lines.append(
                f"deployed: v{dep['version']} at {dep['url']} (pid {dep['pid']}, answering as v{self.answering})"
            )
        elif self.answering is None:
            lines.append(
                f"deployed: NOT SERVING: the record says v{dep['version']} (pid {dep['pid']}) but that process "
                "is gone or does not answer; re-run the deploy task"
            )
        else:
            lines.append(
                f"deployed: WRONG VERSION: the record says v{dep['version']} but pid {dep['pid']} answers as "
                f"v{self.answering}; re-run the deploy task"
            )
        lines += [
            f"unrecorded model server: pid {s.pid} serves v{s.version} on {s.host}:{s.port} "
            + (
                f"(another project's: {s.project}; this project's deploys refuse the port while it runs)"
                if s.project and self.project and not _same_folder(s.project, Path(self.project))
                else "(left by a crashed deploy; the next deploy or `sluice stop` stops it)"
            )
            for s in self.unrecorded
        ]
        return lines


def local_serving(store: PipelineStore, host: str, port: int, project: Path | None = None) -> LocalServing:
    """Check what the local target really serves on ``host:port`` (nothing is changed).

    ``project`` (the spec's project folder) tells this project's strays from another's servers.
    """
    recorded = recorded_deployment(store)
    answering = _answering_version(recorded) if recorded else None
    owned = {recorded.pid} if recorded else set()
    found = [s for s in servers_on(host, port) if s.pid not in owned]
    return LocalServing(encode(recorded) if recorded else None, answering, found, str(project or ""))


def deploy_local(
    loaded: LoadedSpec,
    store: PipelineStore,
    version: str,
    smoke_rows: list[dict[str, Any]],
    say: Callable[[str], None] | None = None,
) -> LocalDeployResult:
    """Start a server for ``models:/<pipeline>/<version>``, check it, then retire the old one.

    Order matters: the new process binds the shared port, passes a health check and a smoke
    prediction on its private port, the record is switched, and only then is the old
    process stopped. A failure stops the new process and leaves the old one serving.
    Deploying the version that is already healthy is a no-op.

    Args:
        loaded: The spec (``deployment.local`` has host, port and timeout).
        store: The pipeline's storage (``deploy/current.json``).
        version: Registered model version (pinned, not an alias).
        smoke_rows: A few input rows for the smoke prediction.
        say: Called with a line per model server stopped (default: this module's logger,
            which inside a task is the task's log): an orphan of a killed deploy stopped by
            the retry is said, not silent.

    Returns:
        The deployment record, with ``changed`` and ``previous_version``.
    """
    cfg = LOCAL.of(loaded.spec.deployment)
    version = str(version)
    say = say or log.info
    _refuse_foreign(loaded)
    old = recorded_deployment(store)
    old_alive = old is not None and processes.alive(old.pid)
    # A deploy killed after it started a server left it on the port with no record: stop it
    # (and any other stray) before anything else, keeping only what the record says serves.
    kept = {old.pid} if old and old_alive else set()
    reconcile_local(cfg.host, cfg.port, keep=kept, log=say, project=loaded.project_dir)
    if old and old.version == version and _healthy(old):
        return LocalDeployResult(**dict(old), changed=False, previous_version=old.version)

    stamp = time.strftime("%Y%m%dT%H%M%S")
    state = _start_checked_server(loaded, store, version, stamp, smoke_rows)
    store.json.write(store.keys.deploy(CURRENT), encode(state))
    store.json.write(store.keys.deploy(f"history/{stamp}-v{version}.json"), encode(state))
    faults.point("deploy.recorded")
    # Retire the old server and anything else on the port: only the recorded one remains.
    reconcile_local(cfg.host, cfg.port, keep={state.pid}, log=say, project=loaded.project_dir)
    return LocalDeployResult(**dict(state), changed=True, previous_version=old.version if old else None)


def watch_local(loaded: LoadedSpec, store: PipelineStore, say: Callable[[str], None] | None = None) -> ServingCheck:
    """Check the local model server; restart the *recorded* version when it is not what serves.

    What is wrong is what ``sluice status`` calls wrong: the recorded process is gone or
    silent (NOT SERVING), it answers with another version (WRONG VERSION), or an unrecorded
    server shares the port. The fix is a deploy of the version the record names, with the
    smoke rows it passed when it was deployed (never another version: which model serves is
    the train DAG's decision, not the watch's); the deploy stops the strays.

    Args:
        loaded: The spec (``deployment.local``).
        store: The pipeline's storage (``deploy/current.json``).
        say: Called with a line per model server stopped (default: this module's logger).

    Returns:
        What was found and done.
    """
    cfg = LOCAL.of(loaded.spec.deployment)
    seen = local_serving(store, cfg.host, cfg.port, loaded.project_dir)
    if seen.recorded is None and not seen.unrecorded:
        return ServingCheck(status=ServingStatus.NOTHING)
    found = [] if seen.healthy else seen.describe()
    record = recorded_deployment(store)
    if record is None:
        # Strays and no record: nothing may serve without one (the record is what deploys trust).
        stopped = reconcile_local(cfg.host, cfg.port, keep=set(), log=say or log.info, project=loaded.project_dir)
        down = ServingStatus.DOWN if len(stopped) < len(seen.unrecorded) else ServingStatus.RESTARTED
        return ServingCheck(status=down, found=found, error="no deploy record: nothing to restart")
    if seen.healthy:
        return ServingCheck(status=ServingStatus.HEALTHY, version=record.version)
    if not record.smoke.inputs:
        return ServingCheck(
            status=ServingStatus.DOWN,
            version=record.version,
            found=found,
            error="the deploy record has no smoke rows to check a restarted server with (it predates the "
            "serving watch): clear the train DAG's deploy task to redeploy",
        )
    try:
        deploy_local(loaded, store, record.version, record.smoke.inputs, say)
    except Exception as exc:  # reported in the task's failure and its alert
        return ServingCheck(
            status=ServingStatus.DOWN, version=record.version, found=found, error=f"{type(exc).__name__}: {exc}"
        )
    return ServingCheck(status=ServingStatus.RESTARTED, version=record.version, found=found)


def _refuse_foreign(loaded: LoadedSpec) -> None:
    """Fail before starting anything when another project's model server holds the port.

    Raises:
        DeployFailed: Naming the other server and the setting to change.
    """
    cfg = LOCAL.of(loaded.spec.deployment)
    foreign = foreign_servers(cfg.host, cfg.port, loaded.project_dir)
    if foreign:
        other = foreign[0]
        raise DeployFailed(
            f"port {cfg.port} on {cfg.host} is served by another sluice project's model server "
            f"(pid {other.pid}, pipeline {other.pipeline or '?'} v{other.version or '?'}, project "
            f"{other.project or '?'}); nothing was started or stopped: give this pipeline its own "
            f"deployment.local.port, or stop that server with `sluice stop` in its project"
        )


def storage_root(loaded: LoadedSpec) -> str:
    """The spec's ``storage.root`` as a server started elsewhere opens it (a local root made absolute)."""
    root = str(loaded.spec.storage.root)
    if "://" in root:
        return root
    path = Path(root)
    return str(path if path.is_absolute() else loaded.project_dir / path)


def _store_env(store: PipelineStore) -> dict[str, str]:
    """An object store's keys, endpoint and region as the AWS variables s3fs reads in the server."""
    options = store.filesystem_options()
    client = options.get("client_kwargs") or {}
    named = {
        "AWS_ACCESS_KEY_ID": options.get("key"),
        "AWS_SECRET_ACCESS_KEY": options.get("secret"),
        "AWS_SESSION_TOKEN": options.get("token"),
        "AWS_ENDPOINT_URL_S3": client.get("endpoint_url"),
        "AWS_DEFAULT_REGION": client.get("region_name"),
    }
    return {name: str(value) for name, value in named.items() if value}


def _server_command(loaded: LoadedSpec, version: str, ready: Path) -> list[str]:
    cfg = LOCAL.of(loaded.spec.deployment)
    id_column = loaded.spec.source.id_column
    return [
        sys.executable,
        "-m",
        "sluice.cli",
        "serve",
        "--model-uri",
        f"models:/{loaded.spec.pipeline}/{version}",
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--ready-file",
        str(ready),
        "--pipeline",
        loaded.spec.pipeline,
        "--version",
        version,
        "--storage-root",
        storage_root(loaded),
        *(["--id-column", id_column] if id_column else []),
    ]


def _start_checked_server(
    loaded: LoadedSpec, store: PipelineStore, version: str, stamp: str, smoke_rows: list[dict[str, Any]]
) -> LocalDeployment:
    """Start the new server and wait for its health and smoke checks; stop it if they fail."""
    from sluice.services.tracking import tracking_uri

    cfg = LOCAL.of(loaded.spec.deployment)
    # The server runs on this machine: its ready file and log are local working files.
    folder = store.scratch("deploy")
    ready = folder / f"server-v{version}-{stamp}.ready"
    log = folder / f"server-v{version}-{stamp}.log"
    uri = tracking_uri(loaded.project_dir)
    # The registry is the tracking store (as in tracking.configure); a registry URI inherited
    # from elsewhere would make the server look for the model in another store.
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri, **_store_env(store))
    proc = processes.start(_server_command(loaded, version, ready), log, env=env, cwd=loaded.project_dir)
    faults.point("deploy.server_started")
    try:
        admin_port = _wait_ready(proc.pid, cfg.host, ready, cfg.health_timeout_seconds, log)
        base = f"http://{cfg.host}:{admin_port}"
        status, body = http_json(f"{base}/invocations", {"dataframe_records": smoke_rows}, timeout=30)
        if status != 200 or len((body or {}).get("predictions", [])) != len(smoke_rows):
            raise DeployFailed(f"smoke prediction failed: HTTP {status}: {str(body)[:500]}")
    except BaseException:
        processes.stop_group(proc.pid)
        raise
    faults.point("deploy.server_ready")
    return LocalDeployment(
        pipeline=loaded.spec.pipeline,
        version=version,
        model_uri=f"models:/{loaded.spec.pipeline}/{version}",
        pid=proc.pid,
        host=cfg.host,
        port=cfg.port,
        admin_port=admin_port,
        url=f"http://{cfg.host}:{cfg.port}/invocations",
        log=str(log),
        started_at=time.time(),
        smoke=SmokeCheck(rows=len(smoke_rows), predictions=body["predictions"][:5], inputs=smoke_rows),
    )


def _wait_ready(pid: int, host: str, ready_file: Any, timeout: float, log: Any) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DeployFailed(f"model server exited before it was ready; log {log}:\n{tail}")
        if ready_file.exists():
            admin_port = int(json.loads(ready_file.read_text())["admin_port"])
            try:
                status, _ = http_json(f"http://{host}:{admin_port}/ping", timeout=3)
                if status == 200:
                    return admin_port
            except OSError:
                pass
        time.sleep(0.5)
    raise DeployFailed(f"model server not healthy after {timeout}s; log {log}")


def stop_local(
    store: PipelineStore, host: str | None = None, port: int | None = None, project: Path | None = None
) -> list[ServerProcess]:
    """Stop every model server of a pipeline's local target, recorded or not.

    Args:
        store: The pipeline's storage (``deploy/current.json``).
        host: Interface of the public port (default: the record's).
        port: The public port (default: the record's).
        project: Only the servers this project folder started (default: every one on the port).

    Returns:
        The servers stopped (empty when none ran).
    """
    state = recorded_deployment(store)
    host = host or (state.host if state else None)
    port = port or (state.port if state else None)
    if host is None or port is None:
        return []
    return reconcile_local(host, port, keep=set(), project=project)
