"""What ``dags/load_pipelines.py`` calls: every spec in a folder becomes DAGs.

A broken spec must not hide the others, and must still be seen. Airflow records an
import error when a DAG fails ``validate()`` while bagging the rest of the file's DAGs,
so each broken spec becomes a placeholder DAG whose validation raises the spec's errors
(file, line, hint). ``airflow dags list-import-errors`` then shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from sluice.airflow.render import START_DATE, render_pipeline
from sluice.plan import build_plan
from sluice.spec.errors import SpecError, SpecIssue
from sluice.spec.loader import load_folder


class PipelineSpecError(Exception):
    """Raised at DAG validation for a spec that does not compile."""


class BrokenSpecDag(DAG):
    """Stands in for a spec that failed to load; never bagged, only reported."""

    spec_error: str = ""

    def validate(self) -> None:
        """Report the spec's errors as this file's import error."""
        raise PipelineSpecError(self.spec_error)


BROKEN_DAG_ID = "sluice__broken_specs"


def build_all(folder: str | Path) -> dict[str, Any]:
    """Build the DAGs of every ``*.pipeline.yaml`` in ``folder``.

    Returns:
        ``{dag_id: DAG}`` to be placed in the DAG file's globals. With broken specs it also
        holds one placeholder that reports all of them (Airflow keeps one import error per
        DAG file, so they are reported together).
    """
    report = load_folder(folder)
    dags: dict[str, Any] = {}
    for loaded in report.specs:
        try:
            built = render_pipeline(build_plan(loaded))
        except Exception as exc:  # a renderer bug must not take the other pipelines down either
            issue = SpecIssue(str(loaded.path), None, None, "", f"cannot build DAGs: {type(exc).__name__}: {exc}")
            report.errors[str(loaded.path)] = SpecError([issue])
            continue
        dags.update({d.dag_id: d for d in built})
    if report.errors:
        stub = BrokenSpecDag(dag_id=BROKEN_DAG_ID, schedule=None, start_date=START_DATE)
        stub.spec_error = f"{len(report.errors)} pipeline spec(s) not loaded:\n" + "\n".join(
            str(err) for err in report.errors.values()
        )
        dags[stub.dag_id] = stub
    return dags
