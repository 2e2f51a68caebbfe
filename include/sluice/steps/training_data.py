"""The rows a train run fits on and holds out: read compactly, split, sampled, within a memory budget.

The feature table is read with pyarrow one row group at a time, in two passes:

1. the label and ``split.by`` columns of every row (a few bytes a row): which rows are
   labelled, which are held out, and which training rows are fitted (``training.sample``);
2. once :func:`check_memory` has found that the fit stays within ``training.max_memory_gb``,
   the rows kept: the model's columns of the fitted rows and every column of the holdout
   (the holdout is written for ``evaluate``, which may score a champion on other columns).

No row is read into both, and the table is never held whole. Strings become pandas
categoricals (a small code a row, not a Python object each), numbers keep the width they
were written with; :func:`sluice.steps.train.prepare` turns the fitted rows into the
model's input types (float64 numbers, strings as objects) as before.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.spec.models import CLASSIFICATION_METRICS, Split, Training
from sluice.steps.records import FeatureResult, FittedRows

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd
    import pyarrow as pa

    #: Sorted row positions in a table.
    Positions = npt.NDArray[np.intp]

log = logging.getLogger(__name__)

GIB = 2**30
#: Share of the memory available when the step starts that the default budget allows.
DEFAULT_BUDGET_SHARE = 0.6
#: Bytes a row of one column takes while read (strings: their dictionary index, then a
#: categorical code; numbers at most 8: an integer with missing values becomes float64).
COMPACT_BYTES = {"string": 4, "bool": 1, "number": 8}
#: Float64 copies of a numeric model column alive at the fit's peak, besides the model's input:
#: the pipeline's median imputer takes the column subset, checks it into a copy, and numpy's
#: masked median fills and sorts another with its sort indices (measured: the peak of a fit is
#: there, not in the estimator).
NUMERIC_COPIES = 4
#: The same for a string column: the ordinal encoder's checked copy and its codes.
STRING_COPIES = 2
#: What the estimate adds for what it does not count (allocator slack, small arrays).
ESTIMATE_MARGIN = 1.1
#: Bytes a row of the first pass: the label and split values, whether labelled, its position.
KEY_ROW_BYTES = 24


class TrainingMemoryError(RuntimeError):
    """The fit would need more memory than ``training.max_memory_gb`` allows; nothing was loaded."""


@dataclass(frozen=True)
class SplitRows:
    """The labelled feature rows of a train run, split into the rows fitted on and the holdout.

    Attributes:
        train: Rows the candidate is fitted on (after ``training.sample``): the model's columns
            and the target, strings as categoricals.
        holdout: Rows it is scored on (never fitted on, never sampled): every column.
        split: How the holdout was chosen, in words.
        columns: Columns the model reads.
        trained_on: Batches with rows in ``train``, oldest first.
        held_out: Batches with rows in ``holdout``, oldest first. A batch split row by row
            (random holdout) is in both; with ``features.scope: history`` rows cannot be
            traced to a batch, and both name every batch of the window.
        fitted: How many training rows there were and how many were fitted (the sample).
        memory: The memory check the read passed (estimate, budget); None when the fit ran on
            Spark (``training.engine: spark``), whose executors bound it.
    """

    train: pd.DataFrame
    holdout: pd.DataFrame
    split: str
    columns: list[str]
    trained_on: list[str]
    held_out: list[str]
    fitted: FittedRows
    memory: MemoryCheck | None


# --------------------------------------------------------------------------- the split


def holdout_mask(values: pd.Series | None, n_rows: int, split: Split) -> tuple[npt.NDArray[np.bool_], str]:
    """Which of ``n_rows`` labelled rows are held out, and how they were chosen in words.

    ``holdout: latest`` holds out the rows with the latest value of ``by`` (``values``, a
    pandas Series of it, or None without ``by``). While only one value exists (the very first
    batch), it falls back to a seeded random ``fraction`` so the first model can still be
    trained and judged; the description says so.
    """
    import numpy as np
    import pandas as pd

    if split.holdout == "latest" and split.by and values is not None:
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)  # as the rows were read before: max() of the strings
        latest = values.max()
        mask = (values == latest).to_numpy()
        if 0 < mask.sum() < n_rows:
            return mask, f"holdout = rows with {split.by} == {latest}"
        reason = f"only one value of {split.by}; "
    else:
        reason = ""
    if n_rows < 2:
        raise ValueError(f"need at least 2 labelled rows to train and hold out, got {n_rows}")
    rng = np.random.default_rng(split.seed)
    mask = rng.random(n_rows) < split.fraction
    if not mask.any() or mask.all():  # tiny tables: keep at least one row on each side
        mask[:] = False
        mask[rng.integers(n_rows)] = True
    return mask, f"{reason}random {split.fraction:.0%} holdout (seed {split.seed})"


def split_holdout(df: pd.DataFrame, split: Split) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Split the rows of ``df`` into train and holdout (copies), as :func:`holdout_mask` chooses."""
    values = df[split.by] if split.by and split.holdout == "latest" else None
    mask, text = holdout_mask(values, len(df), split)
    return df[~mask], df[mask], text


def check_label_and_split_columns(loaded: LoadedSpec, names: list[str]) -> None:
    """Refuse a feature table without ``training.target`` (or ``split.by`` with ``holdout: latest``).

    Both engines call it before reading a row. ``sluice lint`` checks the same against the
    feature job's output when it can run the job; this is the run-time guard, with the fix.

    Raises:
        KeyError: Naming the key, the table's columns and the fix.
    """
    training = loaded.spec.training
    fix = f"(fix: name a column that features.job '{loaded.spec.features.job}' writes, then run sluice lint)"
    if training.target not in names:
        raise KeyError(f"training.target '{training.target}' is not a column of the feature table: {names} {fix}")
    by = training.split.by if training.split.holdout == "latest" else None
    if by is not None and by not in names:
        raise KeyError(f"training.split.by '{by}' is not a column of the feature table: {names} {fix}")


def feature_columns(df: pd.DataFrame, spec: LoadedSpec) -> list[str]:
    """Columns the model reads: ``training.features`` or everything but target and drop."""
    t = spec.spec.training
    if t.features is not None:
        missing = [c for c in t.features if c not in df.columns]
        if missing:
            raise KeyError(f"training.features names columns the feature job does not produce: {missing}")
        return list(t.features)
    return [c for c in df.columns if c != t.target and c not in t.drop]


# --------------------------------------------------------------------------- the sample


def sample_seed(training: Training) -> int:
    """``training.seed``, else an integer ``params.random_state``, else ``split.seed``."""
    if training.seed is not None:
        return training.seed
    state = training.params.get("random_state")
    if isinstance(state, int) and not isinstance(state, bool) and state >= 0:
        return state
    return training.split.seed


def sample_rows(y: npt.NDArray[Any], training: Training, stratify: bool) -> tuple[Positions, FittedRows]:
    """Positions (sorted) of the training rows to fit on, as ``training.sample`` says, and the record.

    Args:
        y: The target of every training row.
        training: The spec's ``training`` section (``sample``, ``seed``).
        stratify: Keep each class's share of the rows (classification), at least one row a class.
    """
    import numpy as np

    n = len(y)
    setting = training.sample
    wanted = n if setting is None else min(n, setting if isinstance(setting, int) else max(1, round(setting * n)))
    written = None if setting is None else str(setting)
    if wanted >= n:
        return np.arange(n), FittedRows(available=n, fitted=n, fraction=1.0, setting=written)
    seed = sample_seed(training)
    rng = np.random.default_rng(seed)
    if not stratify:
        picked = rng.choice(n, wanted, replace=False)
    else:
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        quotas = _class_quotas(counts, wanted)
        picked = np.concatenate(
            [rng.choice(np.flatnonzero(inverse == c), q, replace=False) for c, q in enumerate(quotas) if q]
        )
    record = FittedRows(
        available=n, fitted=wanted, fraction=wanted / n, setting=written, stratified=stratify, seed=seed
    )
    return np.sort(picked), record


def _class_quotas(counts: npt.NDArray[np.intp], wanted: int) -> npt.NDArray[np.int64]:
    """Rows to take from each class: its share of ``wanted`` (largest remainders), at least one each."""
    import numpy as np

    exact = counts * wanted / counts.sum()
    quotas: npt.NDArray[np.int64] = np.floor(exact).astype(np.int64)
    if wanted >= len(counts):
        quotas = np.maximum(quotas, 1)
    while quotas.sum() < wanted:  # hand out what flooring left, largest remainder first
        room = np.where(quotas < counts, exact - quotas, -np.inf)
        quotas[int(np.argmax(room))] += 1
    while quotas.sum() > wanted:  # the one-a-class floor overshot: take back from the largest
        quotas[int(np.argmax(quotas))] -= 1
    return quotas


# --------------------------------------------------------------------------- the table, unread


@dataclass(frozen=True)
class FeatureTable:
    """A feature table's row groups, unread: its schema and row counts come from the parquet footers.

    Attributes:
        pieces: One pyarrow fragment per row group, in the table's row order.
        piece_rows: Rows of each piece.
        part_rows: Rows of each part (one per batch with ``features.scope: batch``).
        schema: The parts' schemas unified, strings as dictionaries (read as categoricals).
    """

    pieces: list[Any]
    piece_rows: list[int]
    part_rows: list[int]
    schema: pa.Schema

    @property
    def rows(self) -> int:
        """Rows of the whole table."""
        return sum(self.part_rows)


def open_table(store: PipelineStore, features: FeatureResult) -> FeatureTable:
    """The feature table of ``features`` (its parts in order), without reading any row."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    parts = [store.parquet.files(store.key_of(loc)) for loc in (features.parts or [features.path])]
    schemas = [f.physical_schema for fs, files in parts for f in ds.dataset(files, filesystem=fs).get_fragments()]
    try:
        plain = pa.unify_schemas([_plain(s) for s in schemas], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"the feature table's parts ({features.path}) disagree on a column's type: {exc}") from None
    strings = [f.name for f in plain if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in strings else f for f in plain])
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=strings))
    pieces, piece_rows, part_rows = [], [], []
    for fs, files in parts:
        rows = 0
        for fragment in ds.dataset(files, filesystem=fs, format=fmt, schema=schema).get_fragments():
            for group in fragment.split_by_row_group():
                pieces.append(group)
                piece_rows.append(group.row_groups[0].num_rows)
                rows += piece_rows[-1]
        part_rows.append(rows)
    return FeatureTable(pieces, piece_rows, part_rows, schema)


def _plain(schema: pa.Schema) -> pa.Schema:
    """``schema`` without its metadata and with dictionary columns as their value type."""
    import pyarrow as pa

    fields = [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    return pa.schema(fields)


def read_columns(table: FeatureTable, columns: list[str]) -> pd.DataFrame:
    """Every row of ``columns`` as a pandas DataFrame (strings as categoricals)."""
    import pyarrow as pa

    chunks = [piece.to_table(columns=columns, schema=table.schema) for piece in table.pieces]
    return _to_pandas(pa.concat_tables(chunks) if chunks else table.schema.empty_table().select(columns))


def read_rows(table: FeatureTable, selections: list[tuple[Positions, list[str]]]) -> list[pd.DataFrame]:
    """The rows at sorted positions, each selection with its own columns, in one pass over the table.

    Args:
        table: The table.
        selections: ``(positions, columns)`` pairs; positions are sorted row numbers of the table.

    Returns:
        One pandas DataFrame per selection (strings as categoricals), rows in table order.
    """
    import numpy as np
    import pyarrow as pa

    taken: list[list[Any]] = [[] for _ in selections]
    offset = 0
    for piece, n in zip(table.pieces, table.piece_rows, strict=True):
        bounds = [np.searchsorted(positions, [offset, offset + n]) for positions, _ in selections]
        needed = [c for (lo, hi), (_, cols) in zip(bounds, selections, strict=True) if hi > lo for c in cols]
        if needed:
            chunk = piece.to_table(columns=list(dict.fromkeys(needed)), schema=table.schema)
            for out, (lo, hi), (positions, cols) in zip(taken, bounds, selections, strict=True):
                if hi > lo:
                    out.append(chunk.select(cols).take(pa.array(positions[lo:hi] - offset)))
        offset += n
    frames = []
    for out, (_, cols) in zip(taken, selections, strict=True):
        arrow = pa.concat_tables(out) if out else table.schema.empty_table().select(cols)
        out.clear()
        frames.append(_to_pandas(arrow))
    return frames


def _to_pandas(arrow: pa.Table) -> pd.DataFrame:
    """A pandas DataFrame of ``arrow``, one block a column (no consolidating copy), categories unified."""
    frame: pd.DataFrame = arrow.unify_dictionaries().to_pandas(split_blocks=True, self_destruct=True)
    return frame


def release_arrow_memory() -> None:
    """Give the memory pyarrow's allocator keeps after freeing back to the system.

    pyarrow's pool (mimalloc) holds on to what the reads freed (about 170 MiB per million rows
    read), and the frames' numbers may sit in arrow buffers until dropped: release both
    before the fit takes its share.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


# --------------------------------------------------------------------------- memory


def compact_bytes(arrow_type: Any) -> int:
    """Bytes a row of a column of ``arrow_type`` takes while read, before the model's conversion."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type) or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return COMPACT_BYTES["string"]
    if pa.types.is_boolean(arrow_type):
        return COMPACT_BYTES["bool"]
    return COMPACT_BYTES["number"]


def is_model_number(arrow_type: Any) -> bool:
    """Whether :func:`sluice.steps.train.prepare` makes a column of ``arrow_type`` a float64 (else strings)."""
    import pyarrow as pa

    return bool(pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type))


@dataclass(frozen=True)
class MemoryEstimate:
    """What the train step's data and fit are expected to take, by part.

    Attributes:
        rows: Rows of the feature table (the first pass reads its label and split columns).
        available: Training rows (labelled, not held out), what a fit without a sample uses.
        fitted: Rows fitted on.
        held_out: Rows held out (read with every column, scored).
        model_columns: Columns the model reads.
        key_row_bytes: Bytes a row of the first pass.
        fit_row_bytes: Bytes a fitted row at the fit's peak: its compact columns, the model's
            input, the preprocessing's copies and the encoded matrix.
        holdout_row_bytes: Bytes a held-out row: every compact column and its scoring input.
    """

    rows: int
    available: int
    fitted: int
    held_out: int
    model_columns: int
    key_row_bytes: int
    fit_row_bytes: int
    holdout_row_bytes: int

    @property
    def fixed_bytes(self) -> int:
        """What does not depend on the sample: the first pass and the holdout."""
        return int(ESTIMATE_MARGIN * (self.rows * self.key_row_bytes + self.held_out * self.holdout_row_bytes))

    @property
    def total_bytes(self) -> int:
        """The whole estimate."""
        return self.fixed_bytes + int(ESTIMATE_MARGIN * self.fitted * self.fit_row_bytes)

    def rows_that_fit(self, room: int) -> int:
        """Most rows a sample may fit on within ``room`` bytes (0 when even the rest does not fit)."""
        return max(0, int((room - self.fixed_bytes) / (ESTIMATE_MARGIN * self.fit_row_bytes)))


def estimate_memory(schema: Any, columns: list[str], rows: int, fitted: FittedRows, held_out: int) -> MemoryEstimate:
    """Estimate the memory of reading the table and fitting ``fitted`` rows of ``columns`` (bytes a row by type).

    Args:
        schema: The feature table's (unified) arrow schema.
        columns: The model's columns.
        rows: Rows of the table.
        fitted: The training rows and how many are fitted.
        held_out: Rows held out.
    """
    types = [schema.field(c).type for c in columns]
    numbers = sum(1 for t in types if is_model_number(t))
    strings = len(types) - numbers
    n = len(columns)
    # The model's input is a float64 or an object pointer a cell, and so is the encoded
    # matrix the estimator gets; the target and the row's position take 8 bytes each.
    fit = (
        sum(compact_bytes(t) for t in types) + 8 * n * 2 + 8 * (numbers * NUMERIC_COPIES + strings * STRING_COPIES) + 16
    )
    holdout = sum(compact_bytes(f.type) for f in schema) + 8 * n * 2 + 16
    return MemoryEstimate(
        rows,
        fitted.available,
        fitted.fitted,
        held_out,
        n,
        key_row_bytes=KEY_ROW_BYTES,
        fit_row_bytes=fit,
        holdout_row_bytes=holdout,
    )


def available_memory() -> tuple[int, str]:
    """Bytes this process can still take, and whose number that is (the container's or the machine's)."""
    import psutil

    free, source = int(psutil.virtual_memory().available), "the machine's available memory"
    room = _container_room()
    if room is not None and room < free:
        free, source = room, "the room left under the container's memory limit"
    return free, source


def _container_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, else v1), or None without a limit."""
    v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
    try:
        if (v2 / "memory.max").exists():
            limit = (v2 / "memory.max").read_text().strip()
            if limit == "max":
                return None
            stat = dict(line.split() for line in (v2 / "memory.stat").read_text().splitlines())
            return int(limit) - int(stat.get("anon", 0))  # page cache is given back before an OOM kill
        if (v1 / "memory.limit_in_bytes").exists():
            limit_v1 = int((v1 / "memory.limit_in_bytes").read_text())
            if limit_v1 >= 2**60:  # "no limit" is a huge number in v1
                return None
            return limit_v1 - int((v1 / "memory.usage_in_bytes").read_text())
    except (OSError, ValueError):
        return None
    return None


def memory_in_use() -> int:
    """Bytes this process holds now (resident)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def memory_budget(training: Training) -> tuple[int, str]:
    """The step's memory budget in bytes, and where it comes from, in words."""
    if training.max_memory_gb is not None:
        return int(training.max_memory_gb * GIB), "training.max_memory_gb"
    used = memory_in_use()
    free, source = available_memory()
    budget = used + int(DEFAULT_BUDGET_SHARE * free)
    return budget, (
        f"the default: the {used / GIB:.1f} GiB the step uses + {DEFAULT_BUDGET_SHARE:.0%} of "
        f"{free / GIB:.1f} GiB, {source}; set training.max_memory_gb to change it"
    )


@dataclass(frozen=True)
class MemoryCheck:
    """The memory check a train run passed: its estimate, what was in use, the budget and its source."""

    estimate: MemoryEstimate
    used: int
    budget: int
    source: str

    @property
    def need(self) -> int:
        """What the step is expected to use at its peak: in use now plus the estimate."""
        return self.used + self.estimate.total_bytes


def check_memory(loaded: LoadedSpec, estimate: MemoryEstimate) -> MemoryCheck:
    """Refuse a fit whose estimate exceeds the budget, naming the numbers and what to change.

    Returns:
        The check (logged to the MLflow run as ``memory.*`` params).

    Raises:
        TrainingMemoryError: It would not fit; the message says by how much, the most rows a
            ``training.sample`` may keep, and where the setting is.
    """
    budget, source = memory_budget(loaded.spec.training)
    check = MemoryCheck(estimate, memory_in_use(), budget, source)
    log.info(
        "train memory: about %.2f GiB at the peak (%.2f in use + %.2f estimated for %s fitted and %s held-out "
        "rows), budget %.2f GiB (%s)",
        check.need / GIB,
        check.used / GIB,
        estimate.total_bytes / GIB,
        f"{estimate.fitted:,}",
        f"{estimate.held_out:,}",
        budget / GIB,
        source,
    )
    if check.need <= budget:
        return check
    raise TrainingMemoryError(str(loaded.issue(*_refusal(loaded, check))))


def _refusal(loaded: LoadedSpec, check: MemoryCheck) -> tuple[str, str, str]:
    """Where, what and how to fix it, for the refusal's message."""
    e = check.estimate
    message = (
        f"training {loaded.spec.pipeline} would need about {check.need / GIB:.1f} GiB, over its budget of "
        f"{check.budget / GIB:.1f} GiB ({check.source}): {e.fitted:,} of {e.available:,} training rows to fit x "
        f"{e.model_columns} model columns at about {e.fit_row_bytes:,} bytes a row, {e.held_out:,} held-out rows "
        f"at {e.holdout_row_bytes:,}, {e.rows:,} rows in the feature table, {check.used / GIB:.1f} GiB already "
        "in use; only the label and split columns were read"
    )
    most = min(e.rows_that_fit(check.budget - check.used), e.available)
    if most < 1:
        hint = (
            "even the holdout and the label column do not fit: run the train step on a worker with more memory "
            "and set training.max_memory_gb, or narrow training.window"
        )
    else:
        share = math.floor(100 * most / max(1, e.available)) / 100
        hint = (
            f"set training.sample to at most {most:,} rows (sample: {most}"
            + (f", or the share sample: {share:g}" if share > 0 else "")
            + "), or run the train step on a worker with more memory and raise training.max_memory_gb"
        )
    return ("training.sample" if loaded.spec.training.sample is not None else "training", message, hint)


# --------------------------------------------------------------------------- the whole read


def split_rows(loaded: LoadedSpec, store: PipelineStore, features: FeatureResult) -> SplitRows:
    """Read the labelled feature rows, split them as ``training.split`` says and sample the training rows.

    The split and the sample are deterministic (latest value of ``by`` or a seeded random
    share; a seeded sample), so the refit step gets the very rows the candidate was fitted
    on and held out.

    Raises:
        TrainingMemoryError: The fit would not fit in ``training.max_memory_gb`` (checked
            before any feature column is read).
        KeyError: The target is not a column of the feature table.
    """
    import numpy as np
    import pandas as pd

    spec = loaded.spec
    training = spec.training
    table = open_table(store, features)
    names = list(table.schema.names)
    check_label_and_split_columns(loaded, names)
    columns = feature_columns(pd.DataFrame(columns=names), loaded)
    by = training.split.by if training.split.holdout == "latest" else None
    keys = read_columns(table, list(dict.fromkeys([training.target, *([by] if by else [])])))
    at = np.flatnonzero(keys[training.target].notna().to_numpy())  # the labelled rows
    y = keys[training.target].to_numpy()[at]
    mask, split_text = holdout_mask(keys[by].iloc[at].reset_index(drop=True) if by else None, len(at), training.split)
    del keys
    y_train = y[~mask]
    picked, fitted = sample_rows(y_train, training, spec.evaluation.metric in CLASSIFICATION_METRICS)
    fit_at, hold_at = at[~mask][picked], at[mask]
    memory = check_memory(loaded, estimate_memory(table.schema, columns, table.rows, fitted, len(hold_at)))
    train, holdout = read_rows(table, [(fit_at, columns), (hold_at, names)])
    release_arrow_memory()
    # The label as the first pass read it over every row (an integer label with a missing
    # value anywhere is float64, as when the table was read whole).
    train[training.target] = y_train[picked]
    holdout[training.target] = y[mask]
    trained_on, held_out = _batches_of(features, table, fit_at, hold_at)
    return SplitRows(train, holdout, split_text, columns, trained_on, held_out, fitted, memory)


def _batches_of(
    features: FeatureResult, table: FeatureTable, fit_at: Positions, hold_at: Positions
) -> tuple[list[str], list[str]]:
    """The window's batches with rows fitted on, and those with rows held out (every batch when untraceable)."""
    import numpy as np

    window = list(features.batches)
    if not features.parts or len(table.part_rows) != len(window):
        return window, window
    starts = np.cumsum([0, *table.part_rows])
    fitted_parts = set(np.searchsorted(starts, fit_at, side="right") - 1)
    held_parts = set(np.searchsorted(starts, hold_at, side="right") - 1)
    return [b for i, b in enumerate(window) if i in fitted_parts], [b for i, b in enumerate(window) if i in held_parts]
