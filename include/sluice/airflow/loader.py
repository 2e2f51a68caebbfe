"""What ``dags/load_pipelines.py`` calls: every spec in a folder becomes DAGs.

A broken spec must not touch the other pipelines, and must still be seen. Airflow 3.3
keys import errors by DAG *file*: an exception anywhere in ``load_pipelines.py`` (even in
one DAG's ``validate()``) marks every DAG of the file stale with ``has_import_errors``, and
the scheduler then schedules none of them. So this loader never raises. Each spec is
compiled on its own, and each DAG is validated before any DAG of that pipeline is
returned, so a pipeline is registered whole or not at all. A spec that does not compile
becomes one small, valid placeholder DAG, ``<file stem>__spec_error``, that carries the
errors (file, line, hint) in its description and docs, in the UI's DAG list, and whose only
task fails with them if someone runs it. The DAG processor's log has them too.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from sluice.airflow.render import START_DATE, render_dag
from sluice.plan import build_plan
from sluice.plan.model import PlanError
from sluice.spec.errors import SpecError, SpecIssue
from sluice.spec.loader import SPEC_SUFFIX, LoadReport, load_files

log = logging.getLogger(__name__)

#: Tag on every placeholder DAG of a broken spec (filter the DAG list by it).
SPEC_ERROR_TAG = "sluice:spec-error"
SPEC_ERROR_SUFFIX = "__spec_error"


class PipelineSpecError(Exception):
    """Raised by a placeholder DAG's only task: the spec it stands for does not compile."""


def spec_error_dag_id(spec_file: str | Path) -> str:
    """Id of the placeholder DAG of a broken spec file (from its name, never from its content)."""
    stem = Path(spec_file).name.removesuffix(SPEC_SUFFIX)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-") or "unnamed"
    return f"{safe[:200]}{SPEC_ERROR_SUFFIX}"


def _fail_with(message: str) -> None:
    raise PipelineSpecError(message)


def spec_error_dag(spec_file: str, error: SpecError) -> DAG:
    """A valid DAG that shows ``error`` in the UI and fails with it when run.

    Args:
        spec_file: The spec file that does not compile.
        error: Every issue found in it.

    Returns:
        An unscheduled DAG with one task, tagged :data:`SPEC_ERROR_TAG`.
    """
    from airflow.providers.standard.operators.python import PythonOperator

    issues = [str(i) for i in error.issues] or [str(error)]
    first = issues[0] if len(issues) == 1 else f"{issues[0]} (+{len(issues) - 1} more)"
    body = "\n".join(issues)
    doc = (
        f"**The pipeline spec `{spec_file}` does not compile**, so none of its DAGs are "
        "registered. Other pipelines are not affected.\n\n"
        f"```\n{body}\n```\n\nFix the file, then check it with `./sluice lint {spec_file}`; "
        "this DAG disappears and the pipeline's DAGs appear at the next parse."
    )
    dag = DAG(
        dag_id=spec_error_dag_id(spec_file),
        description=f"SPEC ERROR: {first}"[:1000],
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=["sluice", SPEC_ERROR_TAG],
        doc_md=doc,
        default_args={"owner": "sluice"},
        auto_register=False,
    )
    with dag:
        PythonOperator(
            task_id="spec_error",
            python_callable=_fail_with,
            op_args=[f"{spec_file} does not compile:\n{body}"],
            retries=0,
            doc_md=doc,
        )
    return dag


def _compile(report: LoadReport) -> dict[str, Any]:
    dags: dict[str, Any] = {}
    for loaded in report.specs:
        built: list[DAG] = []
        current = ""
        try:
            plan = build_plan(loaded)
            for dag_plan in plan.dags:
                current = f" {dag_plan.dag_id} (schedule: {dag_plan.schedule.describe()})"
                dag = render_dag(plan, dag_plan)
                dag.validate()
                built.append(dag)
        except PlanError as exc:  # e.g. a deploy target asking for a step kind no package declares
            report.errors[str(loaded.path)] = SpecError([loaded.issue(exc.where, str(exc), exc.hint)])
            continue
        except Exception as exc:  # a renderer bug or an Airflow rejection stays with its own spec
            message = f"cannot build DAG{current}: {type(exc).__name__}: {exc}"
            report.errors[str(loaded.path)] = SpecError([SpecIssue(str(loaded.path), None, None, "", message)])
            continue
        dags.update({d.dag_id: d for d in built})
    return dags


def _load(paths: list[Path]) -> LoadReport:
    """Load specs together (cross-spec checks); if that fails unexpectedly, one by one."""
    try:
        return load_files(paths)
    except Exception:  # the loader itself must never take the file down
        log.exception("sluice: loading the specs together failed; loading them one by one")
    report = LoadReport(specs=[], errors={})
    for path in paths:
        try:
            one = load_files([path])
        except Exception as exc:
            report.errors[str(path)] = SpecError([SpecIssue(str(path), None, None, "", f"cannot load: {exc!r}")])
            continue
        report.specs += one.specs
        report.errors.update(one.errors)
    return report


def build_all(folder: str | Path) -> dict[str, Any]:
    """Build the DAGs of every ``*.pipeline.yaml`` in ``folder``; never raises.

    Returns:
        ``{dag_id: DAG}`` to be placed in the DAG file's globals: every DAG of each spec that
        compiles, and one placeholder DAG (:func:`spec_error_dag`) per spec that does not.
    """
    try:
        paths = sorted(Path(folder).glob(f"*{SPEC_SUFFIX}"))
    except OSError as exc:
        log.error("sluice: cannot list pipeline specs in %s: %s", folder, exc)
        return {}
    report = _load(paths)
    dags = _compile(report)
    for spec_file, error in sorted(report.errors.items()):
        log.error("sluice: pipeline spec not loaded (its DAGs are not registered):\n%s", error)
        try:
            placeholder = spec_error_dag(spec_file, error)
        except Exception:
            log.exception("sluice: cannot build the placeholder DAG of %s", spec_file)
            continue
        if placeholder.dag_id in dags:
            log.error("sluice: %s clashes with a pipeline's DAG id; not registered", placeholder.dag_id)
            continue
        dags[placeholder.dag_id] = placeholder
    return dags
