"""Drive a real ``airflow standalone`` (scheduler, DAG processor, triggerer, API server).

Used by the demo and by the scheduler tests. Airflow reads its configuration when first
imported, so every Airflow import here happens inside a function, after the caller has put
the right environment in ``os.environ``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sluice.services import processes

T = TypeVar("T")
TERMINAL = {"success", "failed"}


def start(env: dict[str, str], log_file: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``airflow standalone`` in its own process group (stop it with :func:`stop`)."""
    return processes.start([sys.executable, "-m", "airflow", "standalone"], log_file, env=env, cwd=cwd)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the standalone and every component it started (scheduler, workers, API server)."""
    processes.stop_group(server.pid, grace_seconds=20)


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    server: subprocess.Popen[bytes] | None = None,
    interval: float = 3.0,
) -> T:
    """Poll ``predicate`` until it returns something truthy.

    Raises:
        RuntimeError: The standalone exited meanwhile.
        TimeoutError: Nothing truthy within ``timeout`` seconds, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"airflow standalone exited (code {server.returncode}); see its log")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def dag_runs(dag_id: str, since: float = 0.0) -> list[dict[str, Any]]:
    """Runs of ``dag_id`` queued after ``since`` (epoch seconds), oldest first.

    Each: run_id, state, run_type, queued_at (epoch), tasks ({task_id: state}) and
    consumed_events (number of asset events the run consumed).
    """
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = (
            session.query(DagRun)
            .filter(DagRun.dag_id == dag_id, DagRun.queued_at >= datetime.fromtimestamp(since, UTC))
            .all()
        )
        out = [
            {
                "run_id": r.run_id,
                "state": str(r.state),
                "run_type": str(r.run_type),
                "queued_at": r.queued_at.timestamp() if r.queued_at else 0.0,
                "tasks": {ti.task_id: str(ti.state) for ti in r.get_task_instances(session=session)},
                "consumed_events": len(r.consumed_asset_events),
            }
            for r in runs
        ]
    return sorted(out, key=lambda r: r["queued_at"])


def registered(dag_ids: Iterable[str]) -> bool:
    """Whether the DAG processor has put every one of ``dag_ids`` in the database."""
    from airflow.models import DagModel
    from airflow.utils.session import create_session

    wanted = set(dag_ids)
    with create_session() as session:
        found = {d.dag_id for d in session.query(DagModel).filter(DagModel.dag_id.in_(wanted))}
    return wanted <= found


def emit_asset_events(uri: str, extras: list[dict[str, Any]]) -> None:
    """Record asset events as the REST API does (``POST /assets/events``), in one transaction."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter(AssetModel.uri == uri).one()
        for extra in extras:
            asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)
