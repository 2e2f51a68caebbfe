"""overhead_production: the train DAG on the production shape vs its step functions in a plain script.

``bench/overhead.py`` measures the embedded default (LocalExecutor, SQLite); this measures the
same figure on the production shape of ``include/demo/production_stack.py``: Airflow on
PostgreSQL with the CeleryExecutor (Redis broker, two workers of concurrency 2), an MLflow
tracking server (PostgreSQL, artifacts in S3), the pipeline's storage and landing zone in an
S3 bucket (moto's server) and the features on a Spark standalone cluster. The demo pipeline is
installed into the stack's DAG folder as the production tests install it
(:func:`demo.run_production.install_pipeline`), January lands through the ingest DAG (the file
put into the bucket), a first train run makes the first champion (not measured), then each
repetition runs the ``<pipeline>__train`` DAG once (the DagRun's start to end, from the REST
API) and ``bench/overhead_script.py`` once, with the environment every Airflow component of the
stack gets (same spec, same bucket through the same connection, same MLflow server, same Spark
master), so both sides do the same work. Reported: the medians, the overhead per task
((DAG run - script) / tasks) and, per task, where the DAG run's time went. Target: at most 1.5 s
per task, as on the embedded default.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from overhead import TRAIN, _script_run, measure, result
from scratch import PIPELINE


class _Waiter:
    """The ``wait_for`` that :func:`overhead.measure` expects, for a production stack."""

    @staticmethod
    def wait_for(predicate: Any, timeout: float, what: str, every: float = 1.0) -> Any:
        from demo.run_production import wait_for

        return wait_for(predicate, timeout, what, interval=every)


def _remove_scratch(store: Any) -> None:
    """Remove the local scratch folder of the pipeline's bucket store (the model servers' logs).

    On an ``s3://`` root the deploy step keeps its server logs and ready files under
    ``<tmp>/sluice-scratch/<digest of the store's location>/deploy``, outside the stack's folder.
    """
    folder = store.scratch("deploy").parent
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # only when no other store's scratch is left in it


def run(quick: bool) -> dict[str, Any]:
    """Median train-DAG run on Celery vs plain-script run, 2 repetitions each (1 with ``quick``)."""
    import airflow_client.client as af

    from demo.production_stack import production_stack
    from demo.run_production import drop_month, install_pipeline
    from sluice.services.storage import open_store
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import stop_local

    reps = 1 if quick else 2
    with production_stack() as stack:
        spec = install_pipeline(stack, stack.root / "reference", PIPELINE)
        loaded = load_spec(spec)
        store = open_store(loaded, stack.s3.fsspec_options)
        # The workers' own environment (their project folder is the working directory too).
        env, cwd = stack.airflow.env, Path(stack.airflow.env["SLUICE_PROJECT_DIR"])
        try:
            config = af.Configuration(host=stack.airflow.api_url, access_token=stack.airflow.token())
            with af.ApiClient(config) as api:
                dag_runs, script_runs = measure(
                    _Waiter(),
                    api,
                    store,
                    lambda month: drop_month(stack, PIPELINE, month),
                    lambda n: _script_run(spec, env, n, cwd),
                    reps,
                    "overhead_production",
                )
        finally:
            local = loaded.spec.deployment.local
            stop_local(store, local.host, local.port)
            _remove_scratch(store)
    entry = result(
        "overhead_production",
        dag_runs,
        script_runs,
        f"`{TRAIN}` run on the production shape (Airflow on PostgreSQL, CeleryExecutor on Redis with two "
        "workers, MLflow server, storage in S3, features on a Spark cluster; run start to end)",
        "",
    )
    entry["values"]["breakdown"] = parts = breakdown(dag_runs, script_runs)
    entry["notes"] = notes(parts, entry["values"]["tasks"])
    return entry


def breakdown(dag_runs: list[dict[str, Any]], script_runs: list[dict[str, float]]) -> dict[str, Any]:
    """Per task, medians over the repetitions: the DAG run's phases beside the script's step.

    ``to_queued`` (upstream end to queued: the scheduler), ``queued`` (queued to started: the
    Celery hand-off through Redis and the worker's fork of the task process), ``run`` (the task
    instance's start to end) and ``script`` (the same step in the plain script). ``totals``: the
    same summed over the run (``between`` also holds the run's start to the first task and its
    last task to its end), and the script's ``imports``.
    """
    tasks = [t for t in dag_runs[0]["phases"] if t in dag_runs[0]["tasks"]]
    med = statistics.median
    per_task = {
        t: {
            "to_queued": round(med(r["phases"][t]["to_queued"] for r in dag_runs), 2),
            "queued": round(med(r["phases"][t]["queued"] for r in dag_runs), 2),
            "run": round(med(r["phases"][t]["run"] for r in dag_runs), 2),
            "script": round(med(s[t] for s in script_runs), 2),
        }
        for t in tasks
    }

    def between(r: dict[str, Any]) -> float:
        phases = r["phases"]
        gaps = sum(phases[t]["to_queued"] + phases[t]["queued"] for t in tasks)
        return float(gaps + phases["(run end)"]["after_last_task"])

    totals = {
        "between": round(med(between(r) for r in dag_runs), 2),
        "task_runs": round(med(sum(r["phases"][t]["run"] for t in tasks) for r in dag_runs), 2),
        "script_steps": round(med(sum(s[t] for t in tasks) for s in script_runs), 2),
        "script_imports": round(med(s["imports"] for s in script_runs), 2),
    }
    return {"tasks": per_task, "totals": totals}


def notes(parts: dict[str, Any], tasks: int) -> str:
    """Where the time went, in words, from :func:`breakdown`."""
    per, tot = parts["tasks"], parts["totals"]
    queued = [p["queued"] for p in per.values()]
    to_queued = [p["to_queued"] for p in per.values()]
    in_task = tot["task_runs"] - tot["script_steps"] - tot["script_imports"]
    return (
        f"Between tasks {tot['between']:.1f} s a run ({tot['between'] / tasks:.2f} s per task): the scheduler "
        f"queueing a task after its upstream ended {min(to_queued):.2f}-{max(to_queued):.2f} s, then queued to "
        f"started (Redis, the Celery worker, the fork of the task process) {min(queued):.2f}-{max(queued):.2f} s. "
        f"Inside the tasks {tot['task_runs']:.1f} s against the script's {tot['script_steps']:.1f} s of steps and "
        f"{tot['script_imports']:.1f} s of start-up ({in_task:+.1f} s): each task process parses the DAG file, "
        "opens the store (the S3 connection) and the MLflow client again, but is forked from a Celery worker that "
        "imported the task libraries once (sluice.airflow.runtime.celery_config), while the script imports them in its "
        "steps: check_trigger (the amazon provider's S3 hook for the connection, s3fs, MLflow; about 4.5 s of "
        f"cold imports here) took {per['check_trigger']['script']:.1f} s in the script, "
        f"{per['check_trigger']['run']:.1f} s as a task. The fixed cost of a task process once started shows in "
        f"gate, which does no work (0.0 s in the script): {per['gate']['run']:.2f} s as a task (parsing the DAG "
        "file, the execution API's start, XCom and state calls). "
        "January's features are cached after the first champion, so build_features starts no Spark job on "
        "either side. Run-to-run spread on two shared cores is seconds (train and deploy above all): see "
        "values.dag_runs and values.script_runs."
    )


if __name__ == "__main__":
    from sluice.services import processes

    processes.exit_on_sigterm()  # interrupted, it still stops the servers it started
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
