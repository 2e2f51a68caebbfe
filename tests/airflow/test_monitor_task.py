"""The compute_drift task: which batches the monitor run was told about."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sluice.steps.records import BatchAnnouncement, encode


class BatchesAsset:
    """The asset a triggering event was on (hashable, as Airflow's assets are)."""

    uri = "sluice://flights_delay/batches"


class Stop(Exception):
    """Raised by the stand-in for the drift comparison once it has what it was given."""


def test_compute_drift_reads_publishs_announcement_and_passes_over_an_event_sent_by_hand(
    project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.airflow import tasks
    from sluice.steps import monitor

    given: list[list[str]] = []

    def compare_nothing(loaded: Any, store: Any, announced: list[str], *args: Any) -> Any:
        given.append(announced)
        raise Stop

    monkeypatch.setattr(monitor, "monitor_batches", compare_nothing)
    batches = BatchesAsset()
    published = SimpleNamespace(extra=encode(BatchAnnouncement(batches=["b1", "b2"], rows=10, quarantined=0)))
    by_hand = SimpleNamespace(extra={"reason": "re-check", "source": "ops"})
    context = {
        "triggering_asset_events": {batches: [published, by_hand]},
        "dag": SimpleNamespace(dag_id="flights_delay__monitor"),
        "run_id": "manual__1",
    }

    with pytest.raises(Stop):
        tasks.compute_drift(str(project.write_spec()), **context)

    assert given == [["b1", "b2"]], "the hand-sent event adds no batch and fails nothing"
