"""What every group of commands shares: finding and loading specs, reporting their errors, argument types."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.spec.errors import SpecError, SpecIssue

if TYPE_CHECKING:
    from sluice.spec.loader import LoadedSpec
    from sluice.steps.feature_probe import FeatureProbe


def _spec_files(paths: list[str]) -> list[Path]:
    from sluice.spec.loader import SPEC_SUFFIX

    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        files.extend(sorted(p.glob(f"*{SPEC_SUFFIX}")) if p.is_dir() else [p])
    return files


def _report_spec_error(error: SpecError) -> int:
    """Print every issue of ``error`` as ``file:line:column: where: message (hint: ...)``; return 1.

    The one way every command shows a spec that does not load: :func:`main` sends any
    :class:`SpecError` a command raises here, so none ends in a traceback.
    """
    print(error, file=sys.stderr)
    return 1


def _load_or_report(spec_path: str, deep: bool = False) -> LoadedSpec | None:
    """Load a spec for a command; on any spec problem print it (file:line: hint) and return None.

    Args:
        spec_path: The spec file named on the command line.
        deep: Also run the checks that import the model class (``plan``).
    """
    from sluice.spec.loader import load_spec

    try:
        loaded = load_spec(spec_path)
        issues = _lint_issues(loaded, spec_path, _feature_probe([loaded])) if deep else []
    except SpecError as exc:
        _report_spec_error(exc)
        return None
    # What lint refuses, plan refuses too; what it only warns about is lint's to say.
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        _report_spec_error(SpecError(errors))
        return None
    return loaded


def _store_for(spec_path: str):  # type: ignore[no-untyped-def]
    """The spec and its pipeline store, or ``(None, None)`` after printing the spec's problems."""
    from sluice.airflow.runtime.connections import open_pipeline_store

    loaded = _load_or_report(spec_path)
    if loaded is None:
        return None, None
    return loaded, open_pipeline_store(loaded)


def _project_dir() -> Path:

    from sluice.settings import settings

    return Path(settings().project_dir or Path.cwd()).resolve()


def _model_version(value: str) -> str:
    """A registered model version: digits only (it ends up in names, labels and commands)."""
    if not re.fullmatch(r"[1-9][0-9]{0,9}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a model version (a positive whole number, e.g. 3)")
    return value


def _previous_version(value: str) -> str:
    """A previous model version, or '' for none."""
    return value if value == "" else _model_version(value)


def _pipeline_name(value: str) -> str:
    """A pipeline name as a spec's ``pipeline:`` allows it."""
    from sluice.spec.models import IDENTIFIER

    if not re.fullmatch(IDENTIFIER, value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a pipeline name (lower-case letters, digits and '_', starting with a letter)"
        )
    return value


def _feature_probe(specs: list[LoadedSpec]) -> FeatureProbe:
    from sluice.steps.feature_probe import FeatureProbe

    return FeatureProbe(specs)


def _plan_issues(loaded: LoadedSpec) -> list[SpecIssue]:
    """The plan's refusal of a spec that loaded, e.g. a deploy target asking for a step kind no package declares.

    The DAG file compiles every spec into a plan; lint and plan refuse what it would.
    """
    from sluice.plan import build_plan
    from sluice.plan.model import PlanError

    try:
        build_plan(loaded)
    except PlanError as exc:
        return [loaded.issue(exc.where, str(exc), exc.hint)]
    return []


def _lint_issues(loaded: LoadedSpec, shown: str, probe: FeatureProbe | None) -> list[SpecIssue]:
    """Errors and warnings of a spec that loaded, naming ``shown``.

    The schema warning and the plan's errors always; with ``probe`` (not ``--no-import``), the checks the DAG file
    never runs: the model class imports, the Airflow connections an s3:// root or landing zone
    names exist, and the training columns are in the feature job's output.
    """
    import dataclasses

    from sluice.spec.checks import check_feature_columns, schema_warnings

    found = schema_warnings(loaded, shown) + _plan_issues(loaded)
    if probe is not None:
        from sluice.airflow.runtime.connections import connection_issues
        from sluice.spec.checks import lint_checks

        found += lint_checks(loaded) + connection_issues(loaded)
        learned = probe.learned(loaded)
        if learned.warning is not None:
            found.append(learned.warning)
        if learned.columns is not None:
            found += check_feature_columns(loaded, learned.columns)
    return [dataclasses.replace(issue, file=shown) for issue in found]
