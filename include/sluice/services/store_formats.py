"""File formats over a pipeline's bytes: JSON records and parquet tables.

A :class:`~sluice.services.storage.StorageBackend` only moves bytes; these readers know what
the bytes mean, so a new backend (or a new format) is written once, not once per pair.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sluice.services.store_layout import join

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    import pyarrow.parquet as pq

    from sluice.services.storage import StorageBackend

#: Rows per frame that :meth:`ParquetFiles.chunks` yields by default.
CHUNK_ROWS = 100_000


def encode_json(data: Any) -> bytes:
    """The bytes every JSON record of a pipeline is written as (sorted keys, indented)."""
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()


class JsonFiles:
    """JSON documents at keys of one backend."""

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    def read(self, key: str) -> Any:
        """The JSON document at ``key``; ``FileNotFoundError`` when there is none."""
        return json.loads(self._backend.read_bytes(key))

    def read_or_none(self, key: str) -> Any:
        """The JSON document at ``key``, or ``None`` when there is none."""
        try:
            return self.read(key)
        except FileNotFoundError:
            return None

    def write(self, key: str, data: Any) -> None:
        """Write a JSON document atomically (readers see the old one or the new one)."""
        self._backend.write_bytes(key, encode_json(data))


class ParquetFiles:
    """Parquet tables at keys of one backend: a file, or a folder of part files as Spark writes."""

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    def read(self, key: str) -> pd.DataFrame:
        """A pandas DataFrame of the whole table at ``key``."""
        import pandas as pd

        fs, path = self._backend.filesystem(key)
        return pd.read_parquet(path, filesystem=fs)

    def files(self, key: str) -> tuple[Any, list[str]]:
        """A pyarrow filesystem and the table's data files on it, sorted, without reading them.

        For reading a table piece by piece (its footers, some columns, one row group at a
        time) with ``pyarrow.dataset`` rather than whole, as :meth:`read` does.
        """
        import pyarrow.dataset as ds

        fs, path = self._backend.filesystem(key)
        found = ds.dataset(path, format="parquet", filesystem=fs)
        return found.filesystem, sorted(found.files)

    def parts(self, key: str) -> list[str]:
        """The parquet files of ``key``: the file itself, or a folder's part files in name order."""
        if not self._backend.is_folder(key):
            return [key]
        return [join(key, name) for name in self._backend.ls(key) if name.endswith(".parquet")]

    def shape(self, key: str) -> tuple[list[str], int]:
        """Column names and row count of the table at ``key``, from the footers (no row is read).

        Raises:
            FileNotFoundError: When ``key`` is not there.
        """
        import pyarrow.parquet as pq

        names: list[str] = []
        rows = 0
        for part in self.parts(key):
            with self._backend.open_read(part) as fh:
                parquet = pq.ParquetFile(fh)
                stored_index = _stored_index(parquet)
                names += [n for n in parquet.schema_arrow.names if n not in names and n not in stored_index]
                rows += parquet.metadata.num_rows
        return names, rows

    def chunks(
        self,
        key: str,
        columns: Sequence[str] | None = None,
        chunk_rows: int = CHUNK_ROWS,
        rows: npt.ArrayLike | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The table at ``key`` as pandas DataFrames of at most ``chunk_rows`` rows, in file
        order, read through the backend's ``open_read`` (ranged reads on an object store).

        Memory follows the chunk and the file's row groups (pyarrow decodes a row group's
        columns at a time), not the table: only the ``columns`` asked for are read, and with
        ``rows`` the other rows are dropped before they become pandas objects.

        Args:
            key: A parquet file, or a folder of part files.
            columns: Columns to read (default: all); a part without one of them yields frames
                without it, as concatenating the parts with pandas would.
            chunk_rows: Most rows per frame.
            rows: Sorted positions (0-based, over the whole table) of the only rows to yield;
                row groups without any are skipped unread.

        Yields:
            Frames whose index is each row's position in the table; the same dtypes as
            :meth:`read` gives.
        """
        import numpy as np
        import pyarrow.parquet as pq

        wanted = None if rows is None else np.asarray(rows, dtype=np.int64)
        start = 0  # position in the table of the current row group's first row
        for part in self.parts(key):
            with self._backend.open_read(part) as fh:
                parquet = pq.ParquetFile(fh)
                stored_index = _stored_index(parquet)
                present = [n for n in parquet.schema_arrow.names if n not in stored_index]
                read = present if columns is None else [c for c in columns if c in set(present)]
                for group in range(parquet.metadata.num_row_groups):
                    size = parquet.metadata.row_group(group).num_rows
                    picked = None
                    if wanted is not None:
                        lo, hi = np.searchsorted(wanted, [start, start + size])
                        if lo == hi:
                            start += size
                            continue
                        picked = wanted[lo:hi]
                    offset = start
                    for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=read):
                        end = offset + batch.num_rows
                        if picked is None:
                            index = np.arange(offset, end)
                        else:
                            index = picked[(picked >= offset) & (picked < end)]
                            batch = batch.take(index - offset)
                        offset = end
                        if len(index):
                            frame = batch.to_pandas()
                            frame.index = index
                            yield frame
                    start += size


def _stored_index(parquet: pq.ParquetFile) -> set[str]:
    """Columns holding a pandas index that pandas wrote (``index=True``): not data columns."""
    found = (parquet.schema_arrow.pandas_metadata or {}).get("index_columns", [])
    return {c for c in found if isinstance(c, str)}
