"""The wait for a local landing folder: a FileSensor that agrees with the ``land`` task.

Airflow's FileSensor fires on any glob match, a folder with files inside included, so a
Spark-style ``x.parquet/`` folder, an abandoned ``x.parquet.tmp`` under ``pattern: "*"``
or the ``_processed/`` archive itself woke it for ever while ``land`` landed nothing. This
one asks :func:`sluice.services.landing.wake_reasons`, built on the lister ``land`` uses: it
wakes for a regular file that matches, is not temporary, carries its marker (if the spec
asks for one) and is not held (open for writing, a CSV cut mid-line); for an input ``land``
refuses, so the refusal is reported within one poll; and for an archived file that changed
after it was landed. Everything else about the sensor (deferral, timeout, soft fail) is
FileSensor's.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from airflow.providers.standard.sensors.filesystem import FileSensor

from sluice.airflow.triggers.inbox import WATCHED_IN_TRIGGER, InboxTrigger


class InboxFileSensor(FileSensor):
    """FileSensor on a landing folder that sees only what ``land`` would land."""

    template_fields = ("filepath", "fs_conn_id", "pattern")

    def __init__(
        self,
        *,
        folder: str,
        pattern: str,
        marker: str | None = None,
        spec_path: str | None = None,
        settle_seconds: float | None = None,
        csv: bool = False,
        **kwargs: Any,
    ) -> None:
        """Wait for files matching ``pattern`` in ``folder``.

        Args:
            folder: The landing folder.
            pattern: The spec's ``source.pattern``.
            marker: The spec's ``detect.marker``.
            spec_path: The pipeline's spec, whose storage is checked too: batches a failed run
                stranded there end the wait at once, so the run finishes them; the archived
                files it watches and the refusals already reported come from there too.
            settle_seconds: The spec's ``detect.settle_seconds`` (see :class:`InboxTrigger`).
            csv: Batches are CSV (``source.format``).
            **kwargs: FileSensor's.
        """
        super().__init__(filepath=f"{folder.rstrip('/')}/{pattern}", **kwargs)
        self.folder = folder
        self.pattern = pattern
        self.marker = marker
        self.spec_path = spec_path
        self.settle_seconds = settle_seconds
        self.csv = csv
        self._watched: dict[str, str] = {}
        self._known_hidden: list[str] = []

    def poke(self, context: Any) -> bool:
        """Whether ``land`` has something to do in the landing folder, or a batch is stranded."""
        # Imported here: the DAG file builds this sensor on every parse, and only a run lists.
        from sluice.services.landing import wake_reasons

        store = None
        if self.spec_path:
            from sluice.airflow.runtime.connections import open_pipeline_store
            from sluice.spec.loader import load_spec
            from sluice.steps.ingest import archive_watch, known_hidden

            store = open_pipeline_store(load_spec(self.spec_path))
            self._watched = {path: str(w["version"]) for path, w in archive_watch(store).items()}
            self._known_hidden = known_hidden(store)
        reasons, _ = wake_reasons(
            Path(self.folder),
            self.pattern,
            self.marker,
            csv=self.csv,
            watched=self._watched,
            known_hidden=self._known_hidden,
        )
        if reasons:
            self.log.info("%d thing(s) for land, first: %s", len(reasons), reasons[0])
            return True
        if store is not None:
            from sluice.steps.ingest import unfinished_batches

            stranded = unfinished_batches(store)
            if stranded:
                self.log.info("finishing %d batch(es) a failed run left behind: %s", len(stranded), stranded)
                return True
        return False

    def execute(self, context: Any) -> None:
        """Poke once; if nothing is there, defer to :class:`InboxTrigger`."""
        if not self.deferrable:
            super().execute(context=context)
        elif not self.poke(context=context):
            self.defer(
                timeout=datetime.timedelta(seconds=self.timeout),
                trigger=InboxTrigger(
                    self.folder,
                    self.pattern,
                    self.marker,
                    self.poke_interval,
                    self.settle_seconds,
                    csv=self.csv,
                    # The newest ones: the trigger's arguments are stored with the task; land
                    # checks every watched archive whenever it runs.
                    watched=dict(list(self._watched.items())[-WATCHED_IN_TRIGGER:]),
                    known_hidden=self._known_hidden,
                ),
                method_name="execute_complete",
            )
