"""The baseline of ``bench/overhead.py``: the train DAG's step functions called in sequence by a plain script.

One process, the same functions the Airflow tasks call (``sluice.airflow.tasks``), the same
spec, storage and MLflow store (opened as the tasks open them: ``open_pipeline_store`` reads the
spec's Airflow connection for an ``s3://`` root), in the DAG's order: check_trigger, build_features, train,
evaluate, gate, promote, deploy. Prints one JSON line: seconds per step and in all, counted from
the interpreter's start (a plain script pays its imports once; each Airflow task pays its own).

Usage: ``python bench/overhead_script.py <spec> <run id>``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "include") not in sys.path:
    sys.path.insert(0, str(ROOT / "include"))


def main(spec_path: str, run_id: str) -> dict[str, float]:
    """Run the train steps once; return seconds per step (and ``total``)."""
    from sluice.airflow.runtime.connections import open_pipeline_store
    from sluice.spec.loader import load_spec
    from sluice.steps.evaluate import enforce_gate, evaluate_candidate
    from sluice.steps.features import build_features
    from sluice.steps.promote import promote
    from sluice.steps.records import Trigger
    from sluice.steps.retrain import check_trigger
    from sluice.steps.targets import target_for
    from sluice.steps.train import smoke_rows, train_candidate

    seconds: dict[str, float] = {"imports": time.perf_counter() - STARTED}
    mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        seconds[name] = now - mark
        mark = now

    loaded = load_spec(spec_path)
    store = open_pipeline_store(loaded)
    decision = check_trigger(loaded, store, [Trigger.MANUAL], [], run_id)
    assert decision.proceed, decision.reason
    step("check_trigger")
    features = build_features(loaded, store)
    step("build_features")
    trained = train_candidate(loaded, store, features, f"{loaded.spec.pipeline}__train", run_id)
    step("train")
    verdict = evaluate_candidate(loaded, store, trained, run_id)
    step("evaluate")
    enforce_gate(verdict)
    step("gate")
    promoted = promote(loaded, verdict)
    step("promote")
    target_for(loaded, store).deploy(
        promoted.version,
        previous=promoted.previous,
        run_id=run_id,
        smoke_rows=smoke_rows(store, trained.holdout_path, trained.features),
    )
    step("deploy")
    seconds["total"] = time.perf_counter() - STARTED
    return {k: round(v, 3) for k, v in seconds.items()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
