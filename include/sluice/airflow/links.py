"""Buttons on sluice tasks in the Airflow UI: the MLflow run, the validation and drift reports.

Airflow 3 computes an operator extra link in the worker when the task finishes
(``get_link`` gets the running task instance) and stores the URL in XCom; the API server only
reads it back. So the links read the XCom of the step that knows the answer (``train`` or
``evaluate`` for the MLflow run, ``validate`` for the reports, ``compute_drift`` for drift)
and are attached by the renderer to the tasks in :data:`TASK_LINKS`. Local report files are
served by the sluice plugin's FastAPI app (:mod:`sluice.airflow.views.reports`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
from airflow.sdk import BaseOperatorLink

from sluice.airflow import urls
from sluice.plan.task_ids import TaskId

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore

log = logging.getLogger(__name__)


def mlflow_link(train: dict[str, Any] | None, evaluate: dict[str, Any] | None, mlflow_ui: str | None = None) -> str:
    """MLflow run of the candidate: from the ``evaluate`` decision, else the ``train`` result."""
    from sluice.steps.records import GateDecision, TrainResult, decode_or_none

    gate = decode_or_none(GateDecision, evaluate, "the result of task evaluate")
    trained = decode_or_none(TrainResult, train, "the result of task train")
    run_id = gate.candidate.run_id if gate else trained.mlflow_run_id if trained else None
    return urls.mlflow_run_url(run_id, mlflow_ui) if run_id else ""


def validation_link(store: PipelineStore, validate: dict[str, Any] | None, base: str) -> str:
    """The validation report of the run: the one batch's report, the first rejected one, or the batches folder."""
    from sluice.steps.records import BatchStatus, ValidationOutcomes, decode_or_none

    checked = decode_or_none(ValidationOutcomes, validate, "the result of task validate")
    outcomes = checked.outcomes if checked else []
    if not outcomes:
        return ""
    rejected = [o for o in outcomes if o.status != BatchStatus.ACCEPTED]
    chosen = (rejected or outcomes)[0] if len(outcomes) == 1 or rejected else None
    if chosen is None:  # several accepted batches: the folder listing shows each report
        return urls.report_url(store.pipeline, store.keys.batch(""), base)
    return urls.stored_report_url(store, chosen.report, base) or ""


def drift_link(store: PipelineStore, drift: dict[str, Any] | None, base: str) -> str:
    """The drift report (HTML) written by ``compute_drift``."""
    from sluice.steps.records import DriftResult, decode_or_none

    result = decode_or_none(DriftResult, drift, "the result of task compute_drift")
    path = result.report_path if result else None
    return urls.stored_report_url(store, path, base) or ""


def _pull(ti: Any, task_id: TaskId) -> Any:
    """XCom ``return_value`` of ``task_id`` in the same run as ``ti``."""
    if hasattr(ti, "xcom_pull"):  # in the worker, get_link receives the running task instance
        return ti.xcom_pull(task_ids=str(task_id))
    from airflow.sdk.bases.xcom import BaseXCom

    return BaseXCom.get_one(key="return_value", dag_id=ti.dag_id, task_id=str(task_id), run_id=ti.run_id)


def _store(spec_path: str) -> PipelineStore:
    from sluice.services.storage import open_store
    from sluice.spec.loader import load_spec

    return open_store(load_spec(spec_path))


@attrs.define()
class MlflowRunLink(BaseOperatorLink):
    """'MLflow run': the candidate's run (train, evaluate, gate, approve, promote, deploy)."""

    spec_path: str = ""
    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """URL of the candidate's MLflow run, or '' before training finished."""
        try:
            return mlflow_link(_pull(ti_key, TaskId.TRAIN), _pull(ti_key, TaskId.EVALUATE))
        except Exception as exc:  # a link must never fail a task
            log.warning("no MLflow link: %s", exc)
            return ""


@attrs.define()
class ValidationReportLink(BaseOperatorLink):
    """'Validation report': the run's validation result (validate, check_batches)."""

    spec_path: str = ""
    name = "Validation report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """URL of the validation report served by the sluice plugin, or ''."""
        try:
            return validation_link(_store(self.spec_path), _pull(ti_key, TaskId.VALIDATE), urls.airflow_base_url())
        except Exception as exc:
            log.warning("no validation report link: %s", exc)
            return ""


@attrs.define()
class DriftReportLink(BaseOperatorLink):
    """'Drift report': the HTML drift report (compute_drift, alert_drift of the monitor DAG)."""

    spec_path: str = ""
    name = "Drift report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """URL of the drift report served by the sluice plugin, or ''."""
        try:
            return drift_link(_store(self.spec_path), _pull(ti_key, TaskId.COMPUTE_DRIFT), urls.airflow_base_url())
        except Exception as exc:
            log.warning("no drift report link: %s", exc)
            return ""


@attrs.define()
class DriftMlflowRunLink(BaseOperatorLink):
    """'MLflow run' on the monitor DAG: the run the drift check logged to."""

    spec_path: str = ""
    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """URL of the drift check's MLflow run, or ''."""
        try:
            from sluice.steps.records import DriftResult, decode_or_none

            drift = _pull(ti_key, TaskId.COMPUTE_DRIFT)
            result = decode_or_none(DriftResult, drift, "the result of task compute_drift")
            run_id = result.mlflow_run_id if result else None
            return urls.mlflow_run_url(run_id) if run_id else ""
        except Exception as exc:
            log.warning("no MLflow link: %s", exc)
            return ""


#: Which links each task id gets (task ids are part of the plan's interface).
TASK_LINKS: dict[str, tuple[type[BaseOperatorLink], ...]] = {
    "validate": (ValidationReportLink,),
    "check_batches": (ValidationReportLink,),
    "train": (MlflowRunLink,),
    "evaluate": (MlflowRunLink,),
    "gate": (MlflowRunLink,),
    "approve": (MlflowRunLink,),
    "promote": (MlflowRunLink,),
    "deploy": (MlflowRunLink,),
    "compute_drift": (DriftReportLink, DriftMlflowRunLink),
    "alert_drift": (DriftReportLink, DriftMlflowRunLink),
}


def links_for(task_id: str, spec_path: str) -> list[BaseOperatorLink]:
    """The extra links of a sluice task (empty for tasks without any)."""
    return [cls(spec_path=spec_path) for cls in TASK_LINKS.get(task_id, ())]  # type: ignore[call-arg]
