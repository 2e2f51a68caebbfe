"""Serving: sluice's local model server vs ``mlflow models serve`` of the same model (issue 12, item 8).

In a scratch project (the demo spec, its own SQLite MLflow store, a free serving port), the
demo's feature logic (the pandas twin in ``bench/features.py``) turns three months of flights
into a feature table, sluice's train step fits and logs the candidate, and it is registered
twice (v1, v2). v1 is deployed with sluice's local deploy step (``sluice serve`` on the
spec's port) and also served by ``mlflow models serve --env-manager local`` on another free
port. A bounded load generator (a fixed number of threads, each with its own
``requests.Session``, a fixed number of requests, the same holdout rows in every request)
measures requests/s and p50/p99 latency of each server, alternating sluice / mlflow. Then v2
is deployed while the load generator keeps calling the public port: the switch time and the
failed requests during it are reported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import in_project  # noqa: E402

CLIENTS = 4
PAYLOAD_ROWS = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pandas_features() -> Any:
    """The pandas twin of the demo's feature job, from bench/features.py (imported by path)."""
    spec = importlib.util.spec_from_file_location("bench_features", Path(__file__).with_name("features.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.pandas_features


def _project(root: Path, port: int) -> Path:
    """A scratch project: the demo spec on ``port``, its feature job and reference data."""
    import shutil

    (root / "dags").mkdir(parents=True)
    shutil.copytree(ROOT / "include" / "features", root / "include" / "features")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    spec = yaml.safe_load((ROOT / "dags" / "flights_delay.pipeline.yaml").read_text())
    spec["deployment"] = {"target": "local", "local": {"port": port}}
    path = root / "dags" / "flights_delay.pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _train(spec_path: Path) -> tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """Feature table -> sluice's train step -> two registered versions.

    Returns:
        The loaded spec, its store, the smoke rows and the load generator's payload rows.
    """
    import mlflow
    import pandas as pd

    from demo.producer import month_frame, write_reference
    from sluice.services import tracking
    from sluice.services.storage import open_store
    from sluice.spec.loader import load_spec
    from sluice.steps.features import TABLE
    from sluice.steps.records import FeatureResult
    from sluice.steps.train import prepare, read_holdout, smoke_rows, train_candidate

    loaded = load_spec(spec_path)
    store = open_store(loaded)
    tracking.init_store(tracking.tracking_uri(loaded.project_dir))
    ref = write_reference(loaded.project_dir / "data" / "reference")
    flights = pd.concat([month_frame(m, sample=4000) for m in (1, 2, 3)], ignore_index=True)
    table = _pandas_features()(flights, pd.read_parquet(ref[0]), pd.read_parquet(ref[1]))
    key = store.keys.features("bench", TABLE)
    with store.open_write(key) as fh:
        table.to_parquet(fh, index=False)
    features = FeatureResult(path=store.location(key), key="bench", batches={}, job_hash="bench", rows=len(table))
    trained = train_candidate(loaded, store, features, "flights_delay__train", "bench")
    for _ in range(2):
        mlflow.register_model(f"runs:/{trained.mlflow_run_id}/model", loaded.spec.pipeline)
    smoke = smoke_rows(store, trained.holdout_path, trained.features)
    rows = prepare(read_holdout(store, trained.holdout_path).head(PAYLOAD_ROWS), trained.features).astype(object)
    payload = list(rows.where(rows.notna(), None).to_dict(orient="records"))
    return loaded, store, smoke, payload


def load(
    url: str, payload: list[dict[str, Any]], requests_total: int, until: threading.Event | None = None
) -> dict[str, Any]:
    """``CLIENTS`` threads POST ``payload`` to ``url``; ``requests_total`` in all (or until ``until`` is set).

    Returns:
        requests/s, p50/p99 latency (ms), ok and failed counts, and the first few errors.
    """
    import requests

    body = json.dumps({"dataframe_records": payload})
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = requests_total // CLIENTS

    def client() -> None:
        with requests.Session() as session:
            done = 0
            while (until is None and done < per_client) or (until is not None and not until.is_set()):
                t0 = time.perf_counter()
                try:
                    resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
                    ok = resp.status_code == 200 and len(resp.json()["predictions"]) == len(payload)
                    failure = None if ok else f"HTTP {resp.status_code}: {resp.text[:200]}"
                except (requests.RequestException, ValueError, KeyError) as exc:
                    failure = repr(exc)[:200]
                elapsed = time.perf_counter() - t0
                with lock:
                    if failure is None:
                        latencies.append(elapsed)
                    else:
                        errors.append(failure)
                done += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    qs = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "requests_per_s": len(latencies) / wall,
        "p50_ms": qs[49] * 1000,
        "p99_ms": qs[98] * 1000,
        "ok": len(latencies),
        "failed": len(errors),
        "errors": errors[:5],
        "wall_s": wall,
    }


def _wait_ping(url: str, proc: Any, log: Path, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited ({proc.returncode}); log {log}:\n{log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer /ping within {timeout}s")


def _leftovers(pids: set[int]) -> list[int]:
    from sluice.services import processes

    return [p for p in pids if processes.alive(p)]


def _switch(
    loaded: Any, store: Any, smoke: list[dict[str, Any]], url: str, payload: list[dict[str, Any]], started: set[int]
) -> dict[str, Any]:
    """Deploy v2 while the load generator calls the public port; the switch time and failures."""
    from sluice.steps.deploy import deploy_local

    until = threading.Event()
    during: dict[str, Any] = {}
    loader = threading.Thread(target=lambda: during.update(load(url, payload, 0, until=until)))
    loader.start()
    try:
        time.sleep(1)
        t0 = time.perf_counter()
        second = deploy_local(loaded, store, "2", smoke)
        started.add(second.pid)
        switch_s = time.perf_counter() - t0
        time.sleep(1)
    finally:
        until.set()
        loader.join()
    return {
        "deploy_s": switch_s,
        "ok": during["ok"],
        "failed": during["failed"],
        "errors": during["errors"],
        "p99_ms": during["p99_ms"],
        "changed": second.changed,
    }


def run(quick: bool) -> dict[str, Any]:
    """sluice's local model server vs ``mlflow models serve``, then a deploy switch under load."""
    from sluice.services import processes
    from sluice.services.tracking import tracking_uri
    from sluice.steps.deploy import deploy_local, stop_local

    requests_total = 400 if quick else 1000
    rounds = 1 if quick else 3
    started: set[int] = set()
    values: dict[str, Any] = {"clients": CLIENTS, "payload_rows": PAYLOAD_ROWS, "requests_per_round": requests_total}
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        sluice_port, mlflow_port = _free_port(), _free_port()
        spec_path = _project(Path(tmp), sluice_port)
        stack.enter_context(in_project(spec_path.parents[1]))
        loaded, store, smoke, payload = _train(spec_path)
        uri = tracking_uri(loaded.project_dir)
        env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri, MLFLOW_DISABLE_TELEMETRY="true")
        # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        mlflow_cmd = [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{loaded.spec.pipeline}/1",
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port),
        ]  # fmt: skip
        mlflow_proc = None
        try:
            first = deploy_local(loaded, store, "1", smoke)
            started.add(first.pid)
            mlflow_log = Path(tmp) / "mlflow-serve.log"
            mlflow_proc = processes.start(mlflow_cmd, mlflow_log, env=env, cwd=Path(tmp))
            started.add(mlflow_proc.pid)
            sluice_url, mlflow_url = f"http://127.0.0.1:{sluice_port}", f"http://127.0.0.1:{mlflow_port}"
            _wait_ping(mlflow_url, mlflow_proc, mlflow_log)
            for url in (sluice_url, mlflow_url):  # warm up both (first requests import lazily)
                load(f"{url}/invocations", payload, CLIENTS * 10)
            sides: dict[str, list[dict[str, Any]]] = {"sluice": [], "mlflow": []}
            for _ in range(rounds):
                sides["sluice"].append(load(f"{sluice_url}/invocations", payload, requests_total))
                sides["mlflow"].append(load(f"{mlflow_url}/invocations", payload, requests_total))
            for name, runs in sides.items():
                values[name] = {
                    k: statistics.median(r[k] for r in runs) for k in ("requests_per_s", "p50_ms", "p99_ms", "wall_s")
                }
                values[name]["failed"] = sum(r["failed"] for r in runs)
                values[name]["errors"] = [e for r in runs for e in r["errors"]][:5]
            values["switch"] = _switch(loaded, store, smoke, f"{sluice_url}/invocations", payload, started)
        finally:
            stop_local(store)
            if mlflow_proc is not None:
                processes.stop_group(mlflow_proc.pid)
        values["left_running"] = _leftovers(started)
    s, m = values["sluice"], values["mlflow"]
    ratio = s["requests_per_s"] / m["requests_per_s"]
    met = ratio >= 1.0 and s["p99_ms"] <= m["p99_ms"] and values["switch"]["failed"] == 0
    return {
        "name": "serving",
        "summary": summary(values),
        "measured": (
            f"requests/s and p50/p99 latency of sluice's local model server vs `mlflow models serve` "
            f"({CLIENTS} clients, {requests_total} requests of {PAYLOAD_ROWS} holdout rows, median of {rounds}), "
            "and a deploy switch under load"
        ),
        "baseline": "mlflow models serve --env-manager local of the same registered model",
        "values": values,
        "ratio": ratio,
        "target": "requests/s >= 1.0x mlflow's, p99 no worse, no failed request during a deploy switch",
        "target_ratio": 1.0,
        "met": bool(met),
        "notes": (
            "ratio = sluice requests/s / mlflow requests/s. Both are single uvicorn processes on this "
            "2-core machine shared with other work, load generator in the same process as the deployer. "
            "sluice's server scores JSON dataframes that match the signature on one thread, building "
            "the frame column by column in the signature's dtypes (services/scoring.py); other "
            "requests go to MLflow's own scoring code. The deployed sluice server also writes its "
            "prediction log and counts /metrics (the local target always gives it the pipeline's storage)."
            + (" Quick mode: fewer requests, one round." if quick else "")
        ),
    }


def summary(values: dict[str, Any]) -> str:
    """The performance table's "measured here" text of a serving entry."""
    s, m, switch = values["sluice"], values["mlflow"], values["switch"]
    return (
        f"sluice {s['requests_per_s']:.1f} req/s, p99 {s['p99_ms']:.0f} ms vs mlflow {m['requests_per_s']:.1f} req/s, "
        f"p99 {m['p99_ms']:.0f} ms; deploy switch {switch['deploy_s']:.1f} s, {switch['failed']} of "
        f"{switch['ok'] + switch['failed']} requests failed"
    )


if __name__ == "__main__":
    from sluice.services import processes

    processes.exit_on_sigterm()  # interrupted, it still stops the servers it started
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
