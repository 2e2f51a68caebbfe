"""Drift of new batches against the champion's training data, with Evidently 0.7.

Reference: the clean rows of the batches the served champion was fitted on (tag
``sluice.batches.trained_on`` of its MLflow run: without the held-out batch for a model
promoted as evaluated, with it for a model refitted after the gate; a run from before that
tag has only ``sluice.batches``, used as before). Current: the clean rows of the newly
accepted batches. Both are sampled (seeded, ``monitoring.drift.sample_size`` rows each) so a
month of data and a year of data cost the same, and a re-run gives the same numbers. The
sample is taken while reading (:func:`read_clean_sample`): the row counts come from the parquet
footers, the sampled positions are drawn first, and only the compared columns of the row
groups holding sampled rows are read, so memory follows the sample, not the batches nor the
champion's history. The Evidently report itself is built in :mod:`sluice.services.drift`;
this step chooses what to compare, records and logs it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.spec.models import Drift
from sluice.steps.lineage import run_batches
from sluice.steps.records import ColumnDrift, DriftStatus, decode, encode
from sluice.steps.records import DriftResult as DriftResult

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

log = logging.getLogger(__name__)

#: The drift result of a monitor run, in its folder.
DRIFT_RESULT = "drift.json"

__all__ = [
    "ColumnDrift",
    "DriftResult",
    "batches_to_monitor",
    "compare",
    "monitor_batches",
    "read_clean_sample",
    "sample",
    "sample_positions",
    "select_columns",
    "too_few_rows",
]


def sample_positions(rows: int, size: int, seed: int) -> npt.NDArray[np.int64]:
    """Sorted positions of a seeded sample of ``size`` of ``rows`` rows, without replacement
    (every position when ``rows <= size``).

    NumPy draws them in memory proportional to ``size`` once ``rows`` is more than 50 times
    it (Floyd's algorithm), so the draw costs the same for a month or a year of rows.
    """
    import numpy as np

    if rows <= size:
        return np.arange(rows, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))


def sample(df: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``size`` rows without replacement, or ``df`` itself when it is smaller.

    The rows at :func:`sample_positions`, in their order: :func:`read_clean_sample` reading the
    same rows from files gives the same sample.
    """
    return df if len(df) <= size else df.iloc[sample_positions(len(df), size, seed)].reset_index(drop=True)


def select_columns(
    reference: Iterable[Any], current: Iterable[Any], wanted: list[str] | None, champion_features: list[str] | None
) -> list[str]:
    """Columns to compare.

    Args:
        reference: Reference column names (a DataFrame iterates over its column names).
        current: New column names.
        wanted: ``monitoring.drift.columns``; every one must exist on both sides.
        champion_features: Columns the champion reads; those that are raw batch columns
            are compared by default (derived features such as joined weather are not in
            a batch).

    Raises:
        KeyError: A wanted column is missing, named with the columns that exist.
    """
    have = set(reference)
    shared = [c for c in current if c in have]
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


def compare(
    reference: pd.DataFrame, current: pd.DataFrame, drift: Drift, champion_features: list[str] | None = None
) -> tuple[list[ColumnDrift], float, bool, Any]:
    """Sample both sides, pick the columns and run the report.

    Returns:
        Per-column results, drift share, verdict (share >= ``drift.drift_share``), snapshot.
    """
    from sluice.services.drift import drift_report

    columns = select_columns(reference, current, drift.columns, champion_features)
    ref = sample(reference, drift.sample_size, drift.seed)
    cur = sample(current, drift.sample_size, drift.seed)
    results, snapshot = drift_report(ref, cur, columns, drift)
    share = sum(r.drifted for r in results) / len(results)
    return results, share, share >= drift.drift_share, snapshot


def read_clean(store: PipelineStore, batch_ids: list[str]) -> pd.DataFrame:
    """The accepted rows of ``batch_ids``, concatenated (every column of every row: the monitor
    step reads a sample instead, :func:`read_clean_sample`)."""
    import pandas as pd

    return pd.concat([store.parquet.read(key) for key in _clean_keys(store, batch_ids)], ignore_index=True)


@dataclass(frozen=True)
class CleanRows:
    """The accepted rows of some batches, known from their files' footers (none read yet).

    Attributes:
        keys: Each batch's ``clean.parquet``, in batch order.
        columns: Column names, in the order the batches first have them.
        rows: Rows of every batch together.
        per_key: Rows of each batch.
    """

    keys: list[str]
    columns: list[str]
    rows: int
    per_key: list[int]

    @classmethod
    def of(cls, store: PipelineStore, batch_ids: list[str]) -> CleanRows:
        """The clean rows of ``batch_ids``.

        Raises:
            FileNotFoundError: A batch has no clean rows, named with where they were looked for.
        """
        keys = _clean_keys(store, batch_ids)
        columns: list[str] = []
        per_key = []
        for key in keys:
            names, rows = store.parquet.shape(key)
            columns += [n for n in names if n not in columns]
            per_key.append(rows)
        return cls(keys, columns, sum(per_key), per_key)


def read_clean_sample(store: PipelineStore, clean: CleanRows, columns: list[str], size: int, seed: int) -> pd.DataFrame:
    """The rows of :func:`sample` over ``clean``'s rows concatenated, only ``columns``, read a
    chunk at a time.

    The positions are drawn first (:func:`sample_positions` over the rows of every batch
    together), then each batch's file is read for its share of them: only ``columns``, only
    the row groups holding a sampled row, the rest of a chunk dropped before it becomes pandas
    objects. Memory follows ``size`` and a row group, whatever the batches' rows; the frame is
    the one ``sample(read_clean(...)[columns], size, seed)`` gives.
    """
    import numpy as np
    import pandas as pd

    frames: list[pd.DataFrame] = []
    if clean.rows <= size:  # every row: no positions to pick
        for key in clean.keys:
            frames += store.parquet.chunks(key, columns)
    else:
        picked = sample_positions(clean.rows, size, seed)
        start = 0
        for key, rows in zip(clean.keys, clean.per_key, strict=True):
            lo, hi = np.searchsorted(picked, [start, start + rows])
            if hi > lo:
                frames += store.parquet.chunks(key, columns, rows=picked[lo:hi] - start)
            start += rows
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def _clean_keys(store: PipelineStore, batch_ids: list[str]) -> list[str]:
    """Each batch's ``clean.parquet``; a batch without one is an error naming where it was looked for."""
    keys = []
    for batch_id in batch_ids:
        key = store.keys.batch(batch_id, "clean.parquet")
        if not store.exists(key):
            raise FileNotFoundError(f"batch {batch_id} has no clean rows at {store.location(key)}")
        keys.append(key)
    return keys


def batches_to_monitor(store: PipelineStore, announced: list[str], reference: list[str]) -> list[str]:
    """Batches to compare: those announced to this run plus any accepted one never monitored.

    Batches the champion was fitted on are its reference, never "new".
    """
    pending = [r.batch_id for r in store.batches.accepted() if not r.monitored_by]
    accepted = {r.batch_id for r in store.batches.accepted()}
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
    per monitored batch set, so the champion's page plots drift over its life. Fewer rows
    than ``min_rows`` on a side give "not enough data" (no report, no point on the series).
    A retry of the same Airflow run returns the recorded result.
    """
    from sluice.services import tracking

    spec = loaded.spec
    drift = spec.monitoring.drift
    # A killed try's report folder: only this step uses the scratch folder, one run at a time.
    for path in store.clear_scratch(".monitor"):
        log.info("removed %s, left by a killed drift check", path)
    result_key = store.keys.monitor(airflow_run_id, DRIFT_RESULT)
    recorded = store.json.read_or_none(result_key)
    if recorded is not None:
        return decode(DriftResult, recorded)

    client = tracking.configure(loaded.project_dir)
    champ = tracking.champion(client, spec.pipeline)
    champ_run = client.get_run(str(champ.run_id)) if champ is not None else None
    reference_batches = run_batches(champ_run.data.tags).trained_on if champ_run else []
    batches = batches_to_monitor(store, announced, reference_batches)
    if champ is None or champ_run is None or not batches or not reference_batches:
        return _record(store, _not_compared(spec.pipeline, champ, batches, reference_batches, drift), result_key)

    reference = CleanRows.of(store, reference_batches)
    current = CleanRows.of(store, batches)
    common: dict[str, Any] = {
        "batches": batches,
        "champion_version": str(champ.version),
        "reference_batches": reference_batches,
        "threshold": drift.drift_share,
        "sample_size": drift.sample_size,
        "seed": drift.seed,
        "mlflow_run_id": None,
    }
    features = [f for f in champ_run.data.tags.get("sluice.features", "").split(",") if f]
    report_key = store.keys.monitor(airflow_run_id, "report.html")
    result, report_text = _measure(store, report_key, (reference, current), drift, features, common)
    result = _log_monitor_run(loaded, client, result, report_text, str(champ.run_id), (dag_id, airflow_run_id))
    _record(store, result, result_key)
    _mark_batches(store, result, airflow_run_id)
    return result


def _measure(
    store: PipelineStore,
    report_key: str,
    sides: tuple[CleanRows, CleanRows],
    drift: Drift,
    features: list[str],
    common: dict[str, Any],
) -> tuple[DriftResult, str | None]:
    """Compare samples of the (reference, current) ``sides`` and save the report, or say there is not enough data.

    Returns:
        The result (without its MLflow run yet) and the report's HTML (None without a report).
    """
    reference, current = sides
    rows = {"reference": reference.rows, "current": current.rows}
    short = too_few_rows(rows, drift.min_rows, str(common["champion_version"]))
    if short is not None:
        result = DriftResult(
            status=DriftStatus.NOT_ENOUGH_DATA,
            drift_share=None,
            drift_detected=False,
            columns=[],
            report_path=None,
            rows=rows,
            reason=short,
            **common,
        )
        return result, None
    compared = select_columns(reference.columns, current.columns, drift.columns, features)
    ref, cur = (read_clean_sample(store, side, compared, drift.sample_size, drift.seed) for side in sides)
    columns, share, detected, snapshot = compare(ref, cur, drift, features)
    report_text = _save_report(store, snapshot, report_key)
    result = DriftResult(
        status=DriftStatus.COMPARED,
        drift_share=share,
        drift_detected=detected,
        columns=columns,
        report_path=store.location(report_key),
        rows={side: min(n, drift.sample_size) for side, n in rows.items()},
        **common,
    )
    return result, report_text


def _save_report(store: PipelineStore, snapshot: Any, report_key: str) -> str:
    """Write the Evidently report to ``report_key``; return its HTML."""
    with tempfile.TemporaryDirectory(dir=store.scratch(".monitor")) as tmp:
        html = Path(tmp) / "report.html"
        snapshot.save_html(str(html))
        text = html.read_text()
        store.put_file(html, report_key)  # moves the file
        return text


def _mark_batches(store: PipelineStore, result: DriftResult, airflow_run_id: str) -> None:
    """Record on each compared batch what the monitor found.

    A batch without a verdict (not enough data) is not marked as monitored: the next run
    compares it again, together with its own batches.
    """
    for batch_id in result.batches:
        if result.status == DriftStatus.COMPARED:
            store.batches.update(
                batch_id,
                monitored_by=airflow_run_id,
                drift_share=result.drift_share,
                drift_status=str(DriftStatus.COMPARED),
            )
        else:
            store.batches.update(batch_id, drift_status=str(result.status), drift_share=None)


def too_few_rows(rows: dict[str, int], min_rows: int, champion_version: str) -> str | None:
    """Why the sides are too small to compare (``monitoring.drift.min_rows``), or None.

    Below a thousand rows or so a drift score is mostly sampling noise (a Jensen-Shannon
    distance over a hundred categories reads about 0.15 between two samples of the same
    month), so a verdict would be a coin toss; "not enough data" says so instead.

    Args:
        rows: Rows on each side before sampling: ``{"reference": n, "current": n}``.
        min_rows: The fewest rows each side must have.
        champion_version: The champion whose training data is the reference.
    """
    if rows["current"] < min_rows:
        return (
            f"not enough data: {rows['current']} new rows < monitoring.drift.min_rows {min_rows}; "
            "no drift verdict, these batches are compared again together with the next ones"
        )
    if rows["reference"] < min_rows:
        return (
            f"not enough data: champion v{champion_version} was trained on {rows['reference']} rows "
            f"< monitoring.drift.min_rows {min_rows}; no drift verdict until a champion trained on more"
        )
    return None


def _not_compared(pipeline: str, champ: Any, batches: list[str], reference: list[str], drift: Drift) -> DriftResult:
    """The result of a run with nothing to compare: no champion, no reference data, or no new batch."""
    if champ is None:
        status, why = DriftStatus.NO_REFERENCE, f"no champion of {pipeline} yet: no reference data, drift not computed"
    elif not reference:
        status, why = (
            DriftStatus.NO_REFERENCE,
            f"champion v{champ.version}'s run names no batches it was trained on: no reference data",
        )
    else:
        status = DriftStatus.NO_NEW_BATCHES
        why = "no accepted batch that the champion was not trained on: nothing new to compare"
    return DriftResult(
        status=status,
        drift_share=None,
        threshold=drift.drift_share,
        sample_size=drift.sample_size,
        seed=drift.seed,
        drift_detected=False,
        columns=[],
        report_path=None,
        mlflow_run_id=None,
        batches=batches,
        champion_version=str(champ.version) if champ is not None else None,
        reference_batches=reference,
        reason=why,
    )


def _record(store: PipelineStore, result: DriftResult, key: str) -> DriftResult:
    store.json.write(key, encode(result))
    return result


def _verdict(result: DriftResult) -> str:
    """The ``sluice.drift.verdict`` tag: drift, no drift, or not enough data."""
    if result.status == DriftStatus.NOT_ENOUGH_DATA:
        return "not enough data"
    return "drift" if result.drift_detected else "no drift"


def _log_monitor_run(
    loaded: LoadedSpec,
    client: Any,
    result: DriftResult,
    report_html: str | None,
    champ_run_id: str,
    airflow_run: tuple[str, str],
) -> DriftResult:
    """Log the monitor run and the champion's ``drift_share`` point; return the result with its run id.

    ``airflow_run`` is the (dag id, run id) of the monitor run. A result that is not compared
    (not enough data) gets a run with its verdict, rows and ``drift.json``, and no point on
    the champion's series.
    """
    import mlflow

    from sluice.services import tracking

    spec = loaded.spec
    drift = spec.monitoring.drift
    dag_id, airflow_run_id = airflow_run
    share = result.drift_share or 0.0
    experiment_id = tracking.ensure_experiment(client, spec.pipeline, loaded.project_dir)
    tags = {
        "sluice.pipeline": spec.pipeline,
        "sluice.role": "monitor",
        "sluice.champion_version": str(result.champion_version),
        "sluice.champion_run_id": champ_run_id,
        "sluice.batches": ",".join(result.batches),
        "sluice.reference_batches": ",".join(result.reference_batches),
        "sluice.airflow_dag_id": dag_id,
        "sluice.airflow_run_id": airflow_run_id,
        "sluice.drift.verdict": _verdict(result),
    }
    tracking.close_abandoned_runs(client, experiment_id, "monitor", airflow_run_id)
    now_ms = int(time.time() * 1000)
    step = len(client.get_metric_history(champ_run_id, "drift_share"))
    compared = result.status == DriftStatus.COMPARED
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor {airflow_run_id}", tags=tags) as run:
        mlflow.log_params(
            {"drift_share_threshold": drift.drift_share, "sample_size": drift.sample_size, "min_rows": drift.min_rows}
        )
        for side, n in result.rows.items():
            mlflow.log_metric(f"rows_{side}", n, step=step, timestamp=now_ms)
        if compared:
            mlflow.log_metric("drift_share", share, step=step, timestamp=now_ms)
            mlflow.log_metric("drifted_columns", len(result.drifted_columns()), step=step, timestamp=now_ms)
            for c in result.columns:
                mlflow.log_metric(f"drift.{c.column}", c.score, step=step, timestamp=now_ms)
        result = result.model_copy(update={"mlflow_run_id": run.info.run_id})
        if compared:
            result = result.model_copy(update={"reason": result.summary()})
        if report_html is not None:
            mlflow.log_text(report_html, "report.html")
        mlflow.log_dict(encode(result), "drift.json")
    if compared:
        # The champion's own run gets the series: one point per monitored batch set.
        client.log_metric(champ_run_id, "drift_share", share, timestamp=now_ms, step=step)
    return result
