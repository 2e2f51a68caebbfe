"""Register a candidate that passed the gate and move the champion alias to it."""

from __future__ import annotations

import time

from sluice.services import faults
from sluice.spec.loader import LoadedSpec
from sluice.steps.lineage import EVALUATED_RUN
from sluice.steps.records import GateDecision, GateVerdict, RefitResult
from sluice.steps.records import PromoteResult as PromoteResult

#: Version tag naming the champion a promotion replaced ('' for none), set before the alias moves.
PREVIOUS_TAG = "sluice.previous_champion"


class StaleDecision(RuntimeError):
    """The champion changed between evaluation and promotion; the decision no longer holds."""


def promote(loaded: LoadedSpec, decision: GateDecision, refit: RefitResult | None = None) -> PromoteResult:
    """Register the candidate (once) and point ``@champion`` at it.

    With ``refit`` (``training.refit: after_gate``), the refit run's model is registered
    instead of the evaluated one; the version is tagged with the evaluated run
    (``sluice.evaluated_run_id``) whose gate decision it was promoted on.

    The alias is re-read first: if it already names this version, nothing changes (a retry
    is a no-op); if it moved since the gate compared against it, promotion stops rather
    than overwrite a champion the gate never saw. The champion being replaced is tagged on
    the new version before the alias moves, so a retry after a kill between the alias and
    the task's result still reports it as ``previous`` (the Kubernetes deploy rolls back to
    it), not the new version.
    """
    import mlflow

    from sluice.services import tracking

    if decision.verdict != GateVerdict.PASS:
        raise ValueError("promote called with a failed gate decision")
    name = loaded.spec.pipeline
    run_id = decision.candidate.run_id
    if refit is not None:
        if refit.evaluated_run_id != run_id or not refit.passed:
            raise ValueError(f"refit run {refit.mlflow_run_id} is not a checked refit of the gated candidate {run_id}")
        run_id = refit.mlflow_run_id
    client = tracking.configure(loaded.project_dir)
    current = tracking.champion(client, name)
    version = tracking.version_for_run(client, name, run_id)
    if current is not None and version is not None and str(current.version) == str(version.version):
        # Unknown (no tag) is None, never this version: a rollback to "previous" must not
        # land on the version being rolled back.
        previous = (version.tags or {}).get(PREVIOUS_TAG) or None
        return PromoteResult(version=str(version.version), previous=previous, changed=False)
    compared = decision.champion.version if decision.champion else None
    current_version = str(current.version) if current is not None else None
    if current_version != compared:
        raise StaleDecision(
            f"champion of {name} is v{current_version} but the gate compared against v{compared}; "
            "re-run the train DAG to evaluate against the current champion"
        )
    if version is None:
        version = mlflow.register_model(f"runs:/{run_id}/model", name, await_registration_for=300)
        faults.point("promote.registered")
    tags = {
        PREVIOUS_TAG: current_version or "",
        "sluice.gate.verdict": str(decision.verdict),
        # The gate's score is the evaluated model's on the holdout (a refit has seen the holdout).
        f"sluice.gate.{decision.metric}": f"{decision.candidate.score:.6f}",
        "sluice.airflow_run_id": decision.airflow_run_id,
        "sluice.promoted_at": str(time.time()),
    }
    if refit is not None:
        tags |= {EVALUATED_RUN: decision.candidate.run_id, "sluice.refit": "after_gate"}
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version.version), key, value)
    faults.point("promote.tagged")
    client.set_registered_model_alias(name, tracking.CHAMPION, str(version.version))
    faults.point("promote.alias_set")
    return PromoteResult(version=str(version.version), previous=current_version, changed=True)
