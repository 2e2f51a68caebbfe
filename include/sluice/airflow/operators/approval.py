"""Manual approval between the gate and promotion (Airflow human-in-the-loop).

The ``approve`` task is the standard provider's ``ApprovalOperator``: on Airflow 3.3 it parks
in the ``awaiting_input`` state (no worker slot, no triggerer) until someone answers in the UI
(Required Actions) or through the REST API (``PATCH .../hitlDetails``). Approve lets
``promote`` run; Reject skips ``promote`` and ``deploy``; no answer within the timeout fails
the task. In every case but Approve the champion is untouched.

The body, shown to the approver, is the gate's evidence: candidate vs champion on the same
holdout, the thresholds and every check, with links to the MLflow runs and the monitor DAG.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from sluice.airflow import urls
from sluice.plan.task_ids import TaskId


def evidence_markdown(pipeline: str, decision: object) -> str:
    """Markdown body for the approver from the ``evaluate`` task's decision record (its XCom).

    The record is decoded into :class:`~sluice.steps.records.GateDecision` first: a record the
    step did not write is not shown half-read; the body then says it could not be read.
    """
    from sluice.steps.records import GateDecision, decode_or_none

    unread: list[str] = []
    gate = decode_or_none(GateDecision, decision, "the decision record of task evaluate", unread)
    if gate is None:
        if unread:
            return (
                f"The decision record for **{pipeline}** could not be read: do not approve without one.\n\n" + unread[0]
            )
        return f"No decision record was found for **{pipeline}**: do not approve without one."
    cand, champ, th = gate.candidate, gate.champion, gate.thresholds

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lines = [
        f"The candidate for **{pipeline}** passed the gate. Approve to make it the champion and deploy it; "
        "Reject (or no answer before the timeout) keeps the current champion.",
        "",
        f"| | {gate.metric} ({'higher' if gate.higher_is_better else 'lower'} is better, same holdout) | MLflow run |",
        "| --- | --- | --- |",
        f"| candidate | {num(cand.score)} | [{cand.run_id}]({urls.mlflow_run_url(cand.run_id)}) |",
    ]
    if champ is not None:
        lines.append(
            f"| champion v{champ.version} | {num(champ.score)} | "
            f"[{champ.run_id}]({urls.mlflow_run_url(str(champ.run_id))}) |"
        )
    else:
        lines.append("| champion | none yet | |")
    lines += [
        "",
        f"Thresholds: min {num(th.min)}, max {num(th.max)}, "
        f"max_regression_vs_champion {num(th.max_regression_vs_champion)}.",
        "",
        "Checks:",
        *[f"- {'passed' if c.passed else 'FAILED'}: {c.detail}" for c in gate.checks],
        "",
        f"Holdout: {gate.holdout.rows} rows ({gate.holdout.split}).",
        *_batch_lines(cand.trained_on, gate.holdout.batches),
        "",
        f"Drift: see the latest run of [{pipeline}__monitor]({urls.airflow_base_url()}/dags/{pipeline}__monitor) "
        "(task `compute_drift`, button *Drift report*).",
    ]
    return "\n".join(lines)


def _batch_lines(trained_on: list[str], held_out: list[str]) -> list[str]:
    """The batches the candidate was trained on and held out (none for records from before these fields)."""
    if not trained_on and not held_out:
        return []
    return [
        "",
        f"Trained on batches: {', '.join(trained_on) or 'none'}; "
        f"held out: {', '.join(held_out) or 'none'}. "
        "With `training.refit: after_gate`, approving refits it on both before it is promoted.",
    ]


def approval_subject(pipeline: str) -> str:
    """Headline of the approval request."""
    return f"Promote the new {pipeline} candidate to champion?"


class EvidenceApprovalOperator(ApprovalOperator):
    """``ApprovalOperator`` whose body is the gate's decision record, read when the task runs.

    Args:
        pipeline: Pipeline name.
        **kwargs: Passed to ``ApprovalOperator`` (``subject``, ``response_timeout``, ...).
    """

    def __init__(self, *, pipeline: str, **kwargs: Any) -> None:
        kwargs.setdefault("subject", approval_subject(pipeline))
        super().__init__(**kwargs)
        self.pipeline = pipeline

    def execute(self, context: Any) -> Any:
        """Show the evidence, then wait for a person's answer."""
        self.body = evidence_markdown(self.pipeline, context["ti"].xcom_pull(task_ids=str(TaskId.EVALUATE)))
        return super().execute(context)
