"""The batch records of one pipeline: which batches landed, in what state, oldest first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.services.batch_record import BatchRecord, BatchStatus
from sluice.services.store_formats import JsonFiles
from sluice.services.store_layout import BATCH_RECORD, StoreLayout

if TYPE_CHECKING:
    from sluice.services.storage import StorageBackend


class BatchStore:
    """Reads and writes ``batches/<id>/batch.json``, the record that commits a batch."""

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend
        self._json = JsonFiles(backend)

    def ids(self) -> list[str]:
        """Ids of every fully landed batch (its ``batch.json`` committed), oldest first."""
        records = []
        for name in self._backend.ls("batches"):
            if not name.endswith("/"):
                continue
            batch_id = name.rstrip("/")
            record = self._json.read_or_none(StoreLayout.batch(batch_id, BATCH_RECORD))
            if record is not None:
                records.append((float(record.get("landed_at", 0.0)), batch_id))
        return [batch_id for _, batch_id in sorted(records)]

    def get(self, batch_id: str) -> BatchRecord:
        """The ``batch.json`` of a batch; ``FileNotFoundError`` when it is not committed."""
        return BatchRecord.model_validate(self._json.read(StoreLayout.batch(batch_id, BATCH_RECORD)))

    def has(self, batch_id: str) -> bool:
        """Whether the batch is committed."""
        return self._backend.exists(StoreLayout.batch(batch_id, BATCH_RECORD))

    def write(self, record: BatchRecord) -> None:
        """Replace a committed batch's ``batch.json`` atomically."""
        self._json.write(StoreLayout.batch(record.batch_id, BATCH_RECORD), record.model_dump(mode="json"))

    def update(self, batch_id: str, **changes: Any) -> BatchRecord:
        """Merge ``changes`` into ``batch.json`` atomically and return the result.

        Raises:
            pydantic.ValidationError: A change names a field the record does not have, or a
                value of the wrong type; nothing is written.
        """
        record = BatchRecord.model_validate(self.get(batch_id).model_dump() | changes)
        self.write(record)
        return record

    def accepted(self) -> list[BatchRecord]:
        """Records of batches whose rows may be used for training, oldest first."""
        records = [self.get(b) for b in self.ids()]
        # A superseded batch is a first part whose file was finished after landing: the
        # batch that superseded it holds all of its rows again.
        return [r for r in records if r.status == BatchStatus.ACCEPTED and not r.superseded_by]
