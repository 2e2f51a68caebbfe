"""Score candidate and champion on the same holdout and decide the gate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sluice.services.storage import PipelineStore, read_json, write_json_atomic
from sluice.spec.loader import LoadedSpec
from sluice.steps.train import TrainResult, prepare, quiet_skops_module_scan, read_holdout


class GateFailed(RuntimeError):
    """The candidate did not pass the gate; the champion stays."""


@dataclass
class Check:
    """One condition of the gate."""

    name: str
    passed: bool
    detail: str


def _champion_columns(model: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    return list(names) if names is not None else []


def evaluate_candidate(
    loaded: LoadedSpec, store: PipelineStore, trained: TrainResult, airflow_run_id: str
) -> dict[str, Any]:
    """Score the candidate and the current champion on the candidate's holdout; decide.

    With no champion yet, only the absolute floor applies. A champion that cannot be
    scored on this holdout (its columns are missing) fails the gate: replacing a model
    that cannot be compared would be a blind swap.

    Returns:
        The decision record (also written to the run folder and the MLflow run).
    """
    import mlflow
    import mlflow.sklearn

    from sluice.services import tracking
    from sluice.steps.metrics import higher_is_better, score

    spec = loaded.spec
    record_path = store.run_dir(airflow_run_id) / "decision.json"
    if record_path.exists():
        existing = read_json(record_path)
        if existing["candidate"]["run_id"] == trained.mlflow_run_id:
            return dict(existing)
    client = tracking.configure(loaded.project_dir)
    metric = spec.evaluation.metric
    gate = spec.evaluation.gate
    higher = higher_is_better(metric)
    target = spec.training.target
    holdout = read_holdout(trained.holdout_path)
    y = holdout[target].to_numpy()

    with quiet_skops_module_scan():
        candidate = mlflow.sklearn.load_model(f"runs:/{trained.mlflow_run_id}/model")
    cand_score = score(candidate, prepare(holdout, _champion_columns(candidate) or trained.features), y, metric)

    champ = tracking.champion(client, spec.pipeline)
    champion_info: dict[str, Any] | None = None
    checks: list[Check] = []
    if gate.min is not None:
        checks.append(Check("floor", cand_score >= gate.min, f"candidate {metric} {cand_score:.4f} >= min {gate.min}"))
    if gate.max is not None:
        checks.append(
            Check("ceiling", cand_score <= gate.max, f"candidate {metric} {cand_score:.4f} <= max {gate.max}")
        )
    if champ is None:
        checks.append(
            Check("champion", True, "no champion yet: the first model that passes the floor becomes champion")
        )
    else:
        with quiet_skops_module_scan():
            champ_model = mlflow.sklearn.load_model(f"models:/{spec.pipeline}/{champ.version}")
        columns = _champion_columns(champ_model)
        missing = [c for c in columns if c not in holdout.columns]
        champion_info = {"version": str(champ.version), "run_id": champ.run_id, "score": None}
        if missing:
            checks.append(
                Check(
                    "champion",
                    False,
                    f"champion v{champ.version} cannot be scored on this holdout: missing columns {missing}",
                )
            )
        else:
            champ_score = score(champ_model, prepare(holdout, columns), y, metric)
            champion_info["score"] = champ_score
            allowed = gate.max_regression_vs_champion
            if higher:
                ok = cand_score >= champ_score - allowed
                detail = f"candidate {cand_score:.4f} >= champion {champ_score:.4f} - {allowed}"
            else:
                ok = cand_score <= champ_score + allowed
                detail = f"candidate {cand_score:.4f} <= champion {champ_score:.4f} + {allowed}"
            checks.append(Check("vs_champion", ok, detail))
    failed = [c for c in checks if not c.passed]
    verdict = "fail" if failed else "pass"
    reason = "; ".join(("FAILED " if not c.passed else "") + c.detail for c in (failed or checks))
    record: dict[str, Any] = {
        "pipeline": spec.pipeline,
        "verdict": verdict,
        "reason": reason,
        "metric": metric,
        "higher_is_better": higher,
        "thresholds": {"min": gate.min, "max": gate.max, "max_regression_vs_champion": gate.max_regression_vs_champion},
        "candidate": {"run_id": trained.mlflow_run_id, "score": cand_score},
        "champion": champion_info,
        "holdout": {"path": trained.holdout_path, "rows": len(holdout), "split": trained.split},
        "checks": [c.__dict__ for c in checks],
        "airflow_run_id": airflow_run_id,
        "decided_at": time.time(),
    }
    with mlflow.start_run(run_id=trained.mlflow_run_id):
        mlflow.log_metric(f"gate_candidate_{metric}", cand_score)
        if champion_info and champion_info["score"] is not None:
            mlflow.log_metric(f"gate_champion_{metric}", champion_info["score"])
        mlflow.set_tag("sluice.gate.verdict", verdict)
        mlflow.set_tag("sluice.gate.reason", reason[:5000])
        mlflow.log_dict(record, "gate/decision.json")
    write_json_atomic(record_path, record)
    return record


def enforce_gate(decision: dict[str, Any]) -> None:
    """Raise :class:`GateFailed` with the numbers when the verdict is ``fail``."""
    if decision["verdict"] != "pass":
        raise GateFailed(f"gate failed for {decision['pipeline']}: {decision['reason']}; champion kept")
