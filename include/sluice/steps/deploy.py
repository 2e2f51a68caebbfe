"""Serve the champion: the ``local`` target runs the model server as a local process."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from sluice.services import processes
from sluice.services.storage import PipelineStore, read_json, write_json_atomic
from sluice.spec.loader import LoadedSpec


class DeployFailed(RuntimeError):
    """The new server did not become healthy; the previous one keeps serving."""


def http_json(url: str, payload: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """GET (or POST ``payload`` as JSON) and return status and decoded body."""
    if not url.startswith("http://"):
        raise ValueError(f"only http:// URLs are used here, got {url}")
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(  # noqa: S310 - http only, checked above
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            body = resp.read().decode()
            return resp.status, json.loads(body) if body.strip().startswith(("{", "[")) else body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def current_deployment(store: PipelineStore) -> dict[str, Any] | None:
    """The record of what is served now, or None."""
    path = store.deploy_dir / "current.json"
    return dict(read_json(path)) if path.exists() else None


def _healthy(state: dict[str, Any]) -> bool:
    if not processes.alive(int(state["pid"])):
        return False
    try:
        status, _ = http_json(f"http://{state['host']}:{state['admin_port']}/ping", timeout=3)
    except OSError:
        return False
    return status == 200


def deploy_local(
    loaded: LoadedSpec, store: PipelineStore, version: str, smoke_rows: list[dict[str, Any]]
) -> dict[str, Any]:
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

    Returns:
        The deployment record, with ``changed`` and ``previous_version``.
    """
    from sluice.services.tracking import tracking_uri

    cfg = loaded.spec.deployment.local
    name = loaded.spec.pipeline
    old = current_deployment(store)
    if old and str(old["version"]) == str(version) and _healthy(old):
        return old | {"changed": False, "previous_version": old["version"]}

    store.deploy_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    ready = store.deploy_dir / f"server-v{version}-{stamp}.ready"
    log = store.deploy_dir / f"server-v{version}-{stamp}.log"
    model_uri = f"models:/{name}/{version}"
    uri = tracking_uri(loaded.project_dir)
    # The registry is the tracking store (as in tracking.configure); a registry URI inherited
    # from elsewhere would make the server look for the model in another store.
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri)
    cmd = [
        sys.executable,
        "-m",
        "sluice.cli",
        "serve",
        "--model-uri",
        model_uri,
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--ready-file",
        str(ready),
        "--pipeline",
        name,
        "--version",
        str(version),
    ]
    proc = processes.start(cmd, log, env=env, cwd=loaded.project_dir)
    try:
        admin_port = _wait_ready(proc.pid, cfg.host, ready, cfg.health_timeout_seconds, log)
        base = f"http://{cfg.host}:{admin_port}"
        status, body = http_json(f"{base}/invocations", {"dataframe_records": smoke_rows}, timeout=30)
        if status != 200 or len((body or {}).get("predictions", [])) != len(smoke_rows):
            raise DeployFailed(f"smoke prediction failed: HTTP {status}: {str(body)[:500]}")
    except BaseException:
        processes.stop_group(proc.pid)
        raise
    state = {
        "pipeline": name,
        "version": str(version),
        "model_uri": model_uri,
        "pid": proc.pid,
        "host": cfg.host,
        "port": cfg.port,
        "admin_port": admin_port,
        "url": f"http://{cfg.host}:{cfg.port}/invocations",
        "log": str(log),
        "started_at": time.time(),
        "smoke": {"rows": len(smoke_rows), "predictions": body["predictions"][:5]},
    }
    write_json_atomic(store.deploy_dir / "current.json", state)
    write_json_atomic(store.deploy_dir / "history" / f"{stamp}-v{version}.json", state)
    if old and int(old["pid"]) != proc.pid and "sluice.cli serve" in processes.cmdline(int(old["pid"])):
        processes.stop_group(int(old["pid"]))
    return state | {"changed": True, "previous_version": old["version"] if old else None}


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


def stop_local(store: PipelineStore) -> bool:
    """Stop the local model server of a pipeline. Returns whether one was running."""
    state = current_deployment(store)
    if not state or not processes.alive(int(state["pid"])):
        return False
    if "sluice.cli serve" in processes.cmdline(int(state["pid"])):
        processes.stop_group(int(state["pid"]))
        return True
    return False
