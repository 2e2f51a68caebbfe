"""Landing-to-ingest latency under the real scheduler, triggerer and DAG processor.

For a local folder and for S3 (a moto server in this process), drop a batch file while
the ingest DAG's sensor is deferred, and measure from the moment the file is complete
to the moment the ``land`` task starts (its TaskInstance ``start_date``). Each sample is
split into "sensed" (file landed -> sensor task finished: the trigger's poll wait, the
trigger event reaching the scheduler, and a worker resuming the sensor) and "to_land"
(sensor finished -> ``land`` started: the scheduler queues ``land``, a worker starts it).

The drop happens at a random phase of the poll cycle, so detection averages half a poll.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from sluice.airflow.runtime.standalone import Standalone, isolated_env  # noqa: E402

BUCKET = "landing"


def _project(root: Path, poll_seconds: int, endpoint: str) -> tuple[Path, dict[str, Path | str]]:
    """A scratch project with one local-folder and one S3 pipeline."""
    (root / "dags").mkdir(parents=True)
    (root / "include").mkdir()
    shutil.copytree(ROOT / "include" / "features", root / "include" / "features")
    shutil.copy(ROOT / "dags" / "load_pipelines.py", root / "dags" / "load_pipelines.py")
    for name in ("airflow_settings.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    base = yaml.safe_load((ROOT / "dags" / "flights_delay.pipeline.yaml").read_text())
    drops: dict[str, Path | str] = {"lat_local": root / "landing", "lat_s3": f"s3://{BUCKET}/in"}
    for i, (name, uri) in enumerate(drops.items()):
        spec = dict(base, pipeline=name)
        spec["source"] = {"uri": str(uri), "pattern": "*.parquet", "detect": {"poll_seconds": poll_seconds}}
        # Two pipelines on one serving port are a spec error (sluice lint compares specs).
        spec["deployment"] = {"target": "local", "local": {"port": 5055 + i}}
        (root / "dags" / f"{name}.pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root, drops


def _drop(target: Path | str, s3: Any, n: int) -> float:
    """Write batch ``n`` (distinct content) and return the time it became complete."""
    from demo.producer import month_frame

    df = month_frame(1 + n % 12, sample=300 + n)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / f"batch_{n:03d}.parquet"
        df.to_parquet(local)
        if isinstance(target, Path):
            target.mkdir(parents=True, exist_ok=True)
            staged = target / f".{local.name}.tmp"
            shutil.copy(local, staged)
            staged.rename(target / local.name)  # atomic: the sensor never sees half a file
        else:
            s3.upload_file(str(local), BUCKET, f"in/{local.name}")
    return time.time()


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _measure(airflow: Standalone, api: Any, pipeline: str, target: Path | str, s3: Any, samples: int, poll: int):
    import airflow_client.client as af

    dag_id = f"{pipeline}__ingest"
    dags, tis = af.DAGApi(api), af.TaskInstanceApi(api)
    airflow.wait_for(lambda: _registered(dags, dag_id), 300, f"{dag_id} to be registered", every=2)
    dags.patch_dag(dag_id, af.DAGPatchBody(is_paused=False))
    rows = []
    for n in range(samples):

        def sensor_deferred() -> Any:
            found = tis.get_task_instances(dag_id, "~", task_id="wait_for_files").task_instances
            return next((t for t in found if str(t.state.value if t.state else "") == "deferred"), None)

        waiting = airflow.wait_for(sensor_deferred, 300, f"{dag_id}: a deferred sensor", every=0.5)
        time.sleep(random.uniform(0, poll))
        landed = _drop(target, s3, n + (0 if isinstance(target, Path) else 100))

        def land_started(run_id: str = waiting.dag_run_id) -> Any:
            found = tis.get_task_instances(dag_id, run_id).task_instances
            by_id = {t.task_id: t for t in found}
            land = by_id.get("land")
            return (by_id["wait_for_files"], land) if land is not None and land.start_date else None

        sensor, land = airflow.wait_for(land_started, 300, f"{dag_id}: land to start", every=0.2)
        started, sensed = _ts(land.start_date), _ts(sensor.end_date)
        assert started is not None and sensed is not None
        rows.append({"latency": started - landed, "sensed": sensed - landed, "to_land": started - sensed})
        print(f"  {pipeline} sample {n + 1}: {rows[-1]['latency']:.2f}s", flush=True)

        def run_finished(run_id: str = waiting.dag_run_id) -> bool:
            state = af.DagRunApi(api).get_dag_run(dag_id, run_id).state
            return str(state.value) in {"success", "failed"}

        airflow.wait_for(run_finished, 600, f"{dag_id}: run to finish", every=1)
    dags.patch_dag(dag_id, af.DAGPatchBody(is_paused=True))
    return rows


def _registered(dags: Any, dag_id: str) -> bool:
    from airflow_client.client.exceptions import NotFoundException

    try:
        return bool(dags.get_dag(dag_id).dag_id == dag_id)
    except NotFoundException:
        return False


def _summary(rows: list[dict[str, float]], poll: int) -> dict[str, Any]:
    lat = [r["latency"] for r in rows]
    median = statistics.median(lat)
    return {
        "sluice_seconds": median,
        "baseline_seconds": float(poll),
        "ratio": median / poll,
        "max_seconds": max(lat),
        "sensed_median_seconds": statistics.median(r["sensed"] for r in rows),
        "to_land_median_seconds": statistics.median(r["to_land"] for r in rows),
        "samples": rows,
    }


def bench_latency(
    samples: int = 3, poll_seconds: int = 5, reaction_events: int = 0
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Median file-landed -> ``land``-started latency for a local folder and for S3.

    With ``reaction_events``, the reaction bench (``bench/reaction.py``) runs first in the
    same embedded Airflow, on ``lat_local``'s train DAG: one Airflow start instead of two.

    Returns:
        ``{"latency_local": {...}, "latency_s3": {...}}`` (``baseline_seconds`` is the poll
        interval and ``ratio`` the median latency over it), and the reaction entry or None.
    """
    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    import reaction
    from sluice.airflow.runtime.standalone import free_port

    random.seed(7)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        requests.post(f"{endpoint}/moto-api/reset", timeout=30)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=BUCKET)
        conn = {
            "conn_type": "aws",
            "login": "bench",
            "password": "bench",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        with tempfile.TemporaryDirectory(prefix="sluice-latency-") as tmp:
            project, drops = _project(Path(tmp) / "project", poll_seconds, endpoint)
            env = isolated_env(
                project,
                {"AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn), "AWS_EC2_METADATA_DISABLED": "true"},
            )
            results = {}
            reacted = None
            with Standalone(project, env) as airflow, airflow.client() as api:
                if reaction_events:
                    rows = reaction.measure(airflow, api, "lat_local", reaction_events)
                    reacted = reaction.result(rows, env, "lat_local")
                for key, pipeline in (("latency_local", "lat_local"), ("latency_s3", "lat_s3")):
                    rows = _measure(airflow, api, pipeline, drops[pipeline], s3, samples, poll_seconds)
                    results[key] = _summary(rows, poll_seconds)
    finally:
        moto.stop()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for r in results.values():
        r["measured_at"] = stamp
    return results, reacted


def run(quick: bool) -> list[dict[str, Any]]:
    """The landing-latency entries (``latency_local``, ``latency_s3``; 3 drops each, quick 2), and reaction's."""
    import reaction
    from harness import entry

    where = {
        "latency_local": "a local folder",
        "latency_s3": "an s3:// source on a moto S3 server (deferred S3KeySensor, aiobotocore in the triggerer)",
    }
    entries = []
    found, reacted = bench_latency(samples=2 if quick else 3, reaction_events=reaction.events_for(quick))
    for name, r in found.items():
        entries.append(
            entry(
                name,
                measured=(
                    f"a batch file landing in {where[name]} -> the ingest DAG's land task starting "
                    "(TaskInstance.start_date) under the real scheduler, triggerer and DAG processor (embedded "
                    "Airflow, LocalExecutor, SQLite); drops at random phases of the poll cycle, "
                    f"median of {len(r['samples'])}"
                ),
                baseline="the poll interval, poll_seconds: 5",
                values={k: v for k, v in r.items() if k != "measured_at"},
                ratio=r["ratio"],
                target="<= 2.0x",
                target_ratio=2.0,
                met=r["ratio"] <= 2.0,
                summary=(
                    f"median {r['sluice_seconds']:.2f} s (max {r['max_seconds']:.2f} s) "
                    f"vs {r['baseline_seconds']:.0f} s"
                ),
            )
        )
    return [*entries, *([reacted] if reacted else [])]


if __name__ == "__main__":
    from sluice.services import processes

    processes.exit_on_sigterm()  # interrupted, it still stops the servers it started
    print(json.dumps(bench_latency()[0], indent=2))
