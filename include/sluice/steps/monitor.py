"""Drift of new batches against the champion's training data, with Evidently 0.7.

Reference: the clean rows of the batches the champion was trained on (tag ``sluice.batches``
of its MLflow run). Current: the clean rows of the newly accepted batches. Both are sampled
(seeded, ``monitoring.drift.sample_size`` rows each) so a month of data and a year of data
cost the same, and a re-run gives the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sluice.services.storage import PipelineStore, read_json, write_json_atomic
from sluice.spec.loader import LoadedSpec
from sluice.spec.models import Drift


@dataclass
class ColumnDrift:
    """Drift of one column.

    Attributes:
        column: Batch column.
        method: Evidently's method (e.g. 'Wasserstein distance (normed)', 'K-S p_value').
        score: Distance, or p-value for the statistical tests.
        threshold: Distances drift at or above it; p-values below it.
        drifted: Evidently's verdict for the column.
    """

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """What one monitor run found (the ``compute_drift`` XCom and ``drift.json``).

    Attributes:
        status: 'compared', 'no_reference' (no champion yet) or 'no_new_batches'.
        drift_share: Share of compared columns that drifted (None when nothing was compared).
        threshold: The spec's ``drift_share``: the batch drifted when the share reaches it.
        drift_detected: Whether the batch drifted.
        columns: Per-column numbers.
        report_path: Evidently HTML report, or None.
        mlflow_run_id: The monitoring run in the pipeline's experiment, or None.
        batches: Batch ids compared (current data).
        champion_version: Registered version whose training data is the reference, or None.
        reference_batches: Batch ids of the reference data.
        rows: Rows compared per side after sampling: ``{"reference": n, "current": n}``.
        sample_size: Sampling size used per side.
        seed: Sampling seed.
        reason: One line for the log.
    """

    status: str
    drift_share: float | None
    threshold: float
    drift_detected: bool
    columns: list[dict[str, Any]]
    report_path: str | None
    mlflow_run_id: str | None
    batches: list[str]
    champion_version: str | None
    reference_batches: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    sample_size: int = 0
    seed: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    def summary(self) -> str:
        """One line with the numbers (used by the log, the failure message and the asset event)."""
        if self.status != "compared":
            return self.reason
        drifted = [c for c in self.columns if c["drifted"]]
        cols = ", ".join(f"{c['column']} {c['method']} {c['score']:.3f} (threshold {c['threshold']})" for c in drifted)
        return (
            f"drift share {self.drift_share:.3f} {'>=' if self.drift_detected else '<'} threshold {self.threshold} "
            f"({len(drifted)}/{len(self.columns)} columns drifted{': ' + cols if cols else ''}); "
            f"batches {', '.join(self.batches)} vs champion v{self.champion_version}'s data; report {self.report_path}"
        )


def sample(df: Any, size: int, seed: int) -> Any:
    """A seeded sample of ``size`` rows without replacement, or ``df`` itself when it is smaller."""
    return df if len(df) <= size else df.sample(n=size, random_state=seed).reset_index(drop=True)


def select_columns(
    reference: Any, current: Any, wanted: list[str] | None, champion_features: list[str] | None
) -> list[str]:
    """Columns to compare.

    Args:
        reference: Reference rows.
        current: New rows.
        wanted: ``monitoring.drift.columns``; every one must exist on both sides.
        champion_features: Columns the champion reads; those that are raw batch columns
            are compared by default (derived features such as joined weather are not in
            a batch).

    Raises:
        KeyError: A wanted column is missing, named with the columns that exist.
    """
    shared = [c for c in current.columns if c in set(reference.columns)]
    if wanted is not None:
        missing = [c for c in wanted if c not in shared]
        if missing:
            raise KeyError(
                f"monitoring.drift.columns names columns that are not in both the reference and "
                f"the new batches: {missing}; batch columns: {shared}"
            )
        return list(wanted)
    if champion_features:
        direct = [c for c in shared if c in set(champion_features)]
        if direct:
            return direct
    return shared


def drift_report(reference: Any, current: Any, columns: list[str], drift: Drift) -> tuple[list[ColumnDrift], Any]:
    """Run Evidently's ``DataDriftPreset`` on the given columns.

    Numbers (not booleans) are numerical columns, everything else categorical. A column that
    is empty on either side cannot be compared and is left out (and so counts for nothing).

    Returns:
        Per-column results and the Evidently snapshot (for ``save_html``).
    """
    import warnings

    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    usable = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    if not usable:
        raise ValueError(f"none of the columns {columns} has values on both sides: nothing to compare")
    numerical = [
        c
        for c in usable
        if pd.api.types.is_numeric_dtype(reference[c])
        and pd.api.types.is_numeric_dtype(current[c])
        and not pd.api.types.is_bool_dtype(reference[c])
    ]
    categorical = [c for c in usable if c not in numerical]
    ref, cur = reference[usable].copy(), current[usable].copy()
    for col in categorical:  # one representation on both sides (e.g. int codes vs strings)
        ref[col] = ref[col].astype("string")
        cur[col] = cur[col].astype("string")
    for col in numerical:
        ref[col] = ref[col].astype("float64")
        cur[col] = cur[col].astype("float64")
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=usable,
        drift_share=drift.drift_share,
        per_column_method={c: m for c, m in drift.methods.items() if c in usable} or None,
        threshold=drift.threshold,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy/pandas chatter about tiny categories
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    data = snapshot.dict()
    verdicts = {
        t["metric_config"]["params"].get("column"): t["status"] == "FAIL"
        for t in data["tests"]
        if t["metric_config"]["params"].get("type", "").endswith("ValueDrift")
    }
    results = []
    for metric in data["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        column = config["column"]
        results.append(
            ColumnDrift(
                column=column,
                method=_display_name(str(config["method"])),
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=bool(verdicts[column]),
            )
        )
    return results, snapshot


def _display_name(method: str) -> str:
    """Evidently's display name for a method given by name ('ks' -> 'K-S p_value')."""
    from evidently.legacy.calculations.stattests import registry

    by_type = registry._registered_stat_tests.get(method)
    return next(iter(by_type.values())).display_name if by_type else method


def compare(
    reference: Any, current: Any, drift: Drift, champion_features: list[str] | None = None
) -> tuple[list[ColumnDrift], float, bool, Any]:
    """Sample both sides, pick the columns and run the report.

    Returns:
        Per-column results, drift share, verdict (share >= ``drift.drift_share``), snapshot.
    """
    columns = select_columns(reference, current, drift.columns, champion_features)
    ref = sample(reference, drift.sample_size, drift.seed)
    cur = sample(current, drift.sample_size, drift.seed)
    results, snapshot = drift_report(ref, cur, columns, drift)
    share = sum(r.drifted for r in results) / len(results)
    return results, share, share >= drift.drift_share, snapshot


def read_clean(store: PipelineStore, batch_ids: list[str]) -> Any:
    """The accepted rows of ``batch_ids``, concatenated."""
    import pandas as pd

    frames = []
    for batch_id in batch_ids:
        path = store.batch_dir(batch_id) / "clean.parquet"
        if not path.exists():
            raise FileNotFoundError(f"batch {batch_id} has no clean rows at {path}")
        frames.append(pd.read_parquet(path))
    return pd.concat(frames, ignore_index=True)


def batches_to_monitor(store: PipelineStore, announced: list[str], reference: list[str]) -> list[str]:
    """Batches to compare: those announced to this run plus any accepted one never monitored.

    Batches the champion was trained on are its reference, never "new".
    """
    pending = [r["batch_id"] for r in store.accepted_batches() if not r.get("monitored_by")]
    accepted = {r["batch_id"] for r in store.accepted_batches()}
    ordered = [b for b in dict.fromkeys([*announced, *pending]) if b in accepted]
    return [b for b in ordered if b not in set(reference)]


def monitor_batches(
    loaded: LoadedSpec, store: PipelineStore, announced: list[str], dag_id: str, airflow_run_id: str
) -> DriftResult:
    """Compare new batches with the champion's training data; write report, result and MLflow run.

    Files: ``monitor/<run>/report.html`` and ``drift.json``. MLflow: a run named
    ``monitor <airflow run id>`` in the pipeline's experiment (tags ``sluice.role=monitor``,
    ``sluice.champion_version``, batches; metric ``drift_share``; artifacts ``report.html``,
    ``drift.json``), and the ``drift_share`` metric on the champion's own run with one step
    per monitored batch set, so the champion's page plots drift over its life. A retry of
    the same Airflow run returns the recorded result.
    """
    import mlflow

    from sluice.services import tracking

    spec = loaded.spec
    drift = spec.monitoring.drift
    out_dir = store.monitor_dir(airflow_run_id)
    result_path = out_dir / "drift.json"
    if result_path.exists():
        return DriftResult(**read_json(result_path))

    client = tracking.configure(loaded.project_dir)
    champ = tracking.champion(client, spec.pipeline)
    base: dict[str, Any] = {"threshold": drift.drift_share, "sample_size": drift.sample_size, "seed": drift.seed}
    if champ is None:
        batches = batches_to_monitor(store, announced, [])
        result = DriftResult(
            status="no_reference",
            drift_share=None,
            drift_detected=False,
            columns=[],
            report_path=None,
            mlflow_run_id=None,
            batches=batches,
            champion_version=None,
            reason=f"no champion of {spec.pipeline} yet: no reference data, drift not computed",
            **base,
        )
        write_json_atomic(result_path, result.to_dict())
        return result
    champ_run_id = str(champ.run_id)
    champ_run = client.get_run(champ_run_id)
    reference_batches = [b for b in champ_run.data.tags.get("sluice.batches", "").split(",") if b]
    batches = batches_to_monitor(store, announced, reference_batches)
    if not batches or not reference_batches:
        reason = (
            f"champion v{champ.version} has no sluice.batches tag: no reference data"
            if not reference_batches
            else "no accepted batch that the champion was not trained on: nothing new to compare"
        )
        result = DriftResult(
            status="no_reference" if not reference_batches else "no_new_batches",
            drift_share=None,
            drift_detected=False,
            columns=[],
            report_path=None,
            mlflow_run_id=None,
            batches=batches,
            champion_version=str(champ.version),
            reference_batches=reference_batches,
            reason=reason,
            **base,
        )
        write_json_atomic(result_path, result.to_dict())
        return result

    reference = read_clean(store, reference_batches)
    current = read_clean(store, batches)
    features = [f for f in champ_run.data.tags.get("sluice.features", "").split(",") if f]
    columns, share, detected, snapshot = compare(reference, current, drift, features)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "report.html"
    snapshot.save_html(str(report_path))
    result = DriftResult(
        status="compared",
        drift_share=share,
        drift_detected=detected,
        columns=[asdict(c) for c in columns],
        report_path=str(report_path),
        mlflow_run_id=None,
        batches=batches,
        champion_version=str(champ.version),
        reference_batches=reference_batches,
        rows={"reference": min(len(reference), drift.sample_size), "current": min(len(current), drift.sample_size)},
        **base,
    )
    experiment_id = tracking.ensure_experiment(client, spec.pipeline, loaded.project_dir)
    tags = {
        "sluice.pipeline": spec.pipeline,
        "sluice.role": "monitor",
        "sluice.champion_version": str(champ.version),
        "sluice.champion_run_id": champ_run_id,
        "sluice.batches": ",".join(batches),
        "sluice.reference_batches": ",".join(reference_batches),
        "sluice.airflow_dag_id": dag_id,
        "sluice.airflow_run_id": airflow_run_id,
        "sluice.drift.verdict": "drift" if detected else "no drift",
    }
    tracking.close_abandoned_runs(client, experiment_id, "monitor", airflow_run_id)
    now_ms = int(time.time() * 1000)
    step = len(client.get_metric_history(champ_run_id, "drift_share"))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor {airflow_run_id}", tags=tags) as run:
        mlflow.log_params({"drift_share_threshold": drift.drift_share, "sample_size": drift.sample_size})
        mlflow.log_metric("drift_share", share, step=step, timestamp=now_ms)
        mlflow.log_metric("drifted_columns", sum(c.drifted for c in columns), step=step, timestamp=now_ms)
        for c in columns:
            mlflow.log_metric(f"drift.{c.column}", c.score, step=step, timestamp=now_ms)
        result.mlflow_run_id = run.info.run_id
        result.reason = result.summary()
        mlflow.log_artifact(str(report_path))
        mlflow.log_dict(result.to_dict(), "drift.json")
    # The champion's own run gets the series: one point per monitored batch set.
    client.log_metric(champ_run_id, "drift_share", share, timestamp=now_ms, step=step)
    write_json_atomic(result_path, result.to_dict())
    for batch_id in batches:
        store.update_batch_record(batch_id, monitored_by=airflow_run_id, drift_share=share)
    return result
