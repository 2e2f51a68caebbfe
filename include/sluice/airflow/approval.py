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


def evidence_markdown(pipeline: str, decision: dict[str, Any] | None) -> str:
    """Markdown body for the approver from the ``evaluate`` decision record."""
    if not decision:
        return f"No decision record was found for **{pipeline}**: do not approve without one."
    metric = decision.get("metric", "metric")
    cand = decision.get("candidate") or {}
    champ = decision.get("champion") or {}
    th = decision.get("thresholds") or {}
    higher = decision.get("higher_is_better", True)

    def num(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = [
        f"The candidate for **{pipeline}** passed the gate. Approve to make it the champion and deploy it; "
        "Reject (or no answer before the timeout) keeps the current champion.",
        "",
        f"| | {metric} ({'higher' if higher else 'lower'} is better, same holdout) | MLflow run |",
        "| --- | --- | --- |",
        f"| candidate | {num(cand.get('score'))} | "
        f"[{cand.get('run_id', '?')}]({urls.mlflow_run_url(str(cand.get('run_id', '')))}) |",
    ]
    if champ.get("version"):
        lines.append(
            f"| champion v{champ['version']} | {num(champ.get('score'))} | "
            f"[{champ.get('run_id')}]({urls.mlflow_run_url(str(champ.get('run_id')))}) |"
        )
    else:
        lines.append("| champion | none yet | |")
    lines += [
        "",
        f"Thresholds: min {num(th.get('min'))}, max {num(th.get('max'))}, "
        f"max_regression_vs_champion {num(th.get('max_regression_vs_champion'))}.",
        "",
        "Checks:",
        *[f"- {'passed' if c.get('passed') else 'FAILED'}: {c.get('detail')}" for c in decision.get("checks") or []],
        "",
        f"Holdout: {(decision.get('holdout') or {}).get('rows', '?')} rows "
        f"({(decision.get('holdout') or {}).get('split', '?')}).",
        *_batch_lines(cand.get("trained_on"), (decision.get("holdout") or {}).get("batches")),
        "",
        f"Drift: see the latest run of [{pipeline}__monitor]({urls.airflow_base_url()}/dags/{pipeline}__monitor) "
        "(task `compute_drift`, button *Drift report*).",
    ]
    return "\n".join(lines)


def _batch_lines(trained_on: list[str] | None, held_out: list[str] | None) -> list[str]:
    """The batches the candidate was trained on and held out (none for records from before these fields)."""
    if not trained_on and not held_out:
        return []
    return [
        "",
        f"Trained on batches: {', '.join(trained_on or []) or 'none'}; "
        f"held out: {', '.join(held_out or []) or 'none'}. "
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
        self.body = evidence_markdown(self.pipeline, context["ti"].xcom_pull(task_ids="evaluate"))
        return super().execute(context)
