"""The state record of one landed batch (``batches/<id>/batch.json``) and its status.

The batch record is pipeline state the storage layer keeps (it is the folder's commit
marker), so its type lives here, below the steps; :mod:`sluice.steps.records` re-exports it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class BatchStatus(StrEnum):
    """Where a batch is in its life: landed, then accepted or rejected by validation."""

    LANDED = "landed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class BatchRecord(BaseModel):
    """What ``batch.json`` holds: the batch's lineage and status.

    Written by ``land`` (lineage, ``landed``), then updated by ``validate`` (the outcome),
    ``confirm_published`` (announced) and ``compute_drift`` (monitored). Unknown fields are
    refused, so a misspelt update fails where it is made.

    ``archived_to`` / ``archived_version`` say where the landing file was archived and its
    ``<size>:<mtime_ns>`` then; ``superseded_by`` names the batch that landed the complete
    content after the archived file changed (its writer had paused): a superseded batch is
    no longer used for training.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str
    sha256: str = ""
    source_file: str = ""
    source_uri: str = ""
    source_suffix: str = ""
    size_bytes: int = 0
    landed_at: float = 0.0
    landed_by_run: str = ""
    status: BatchStatus = BatchStatus.LANDED
    replaces_name_of: list[str] = Field(default_factory=list)
    reason: str = ""
    rows: int = 0
    quarantined: int = 0
    published: bool = False
    published_by_run: str | None = None
    monitored_by: str | None = None
    drift_share: float | None = None
    archived_to: str = ""
    archived_version: str = ""
    superseded_by: str | None = None
    #: What the last monitor run that saw the batch found: 'compared', or 'not_enough_data'
    #: (too few rows for a verdict: the batch is compared again with the next ones).
    drift_status: str | None = None
