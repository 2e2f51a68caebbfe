"""The wait for a local landing folder: a FileSensor that agrees with the ``land`` task.

Airflow's FileSensor fires on any glob match, a folder with files inside included, so a
Spark-style ``x.parquet/`` folder, an abandoned ``x.parquet.tmp`` under ``pattern: "*"``
or the ``_processed/`` archive itself woke it for ever while ``land`` landed nothing. This
one asks :func:`sluice.services.landing.ready_names`, the lister ``land`` uses: only
regular files that match, are not temporary and carry their marker (if the spec asks
for one). Everything else about the sensor (deferral, timeout, soft fail) is FileSensor's.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.triggers.base import BaseTrigger, TriggerEvent


class InboxTrigger(BaseTrigger):
    """Fires once a file the lister would land has kept its size and mtime across two looks ``settle_seconds`` apart."""

    def __init__(
        self,
        folder: str,
        pattern: str,
        marker: str | None = None,
        poke_interval: float = 5.0,
        settle_seconds: float | None = None,
    ) -> None:
        """Watch ``folder`` for files matching ``pattern`` (see :func:`ready_names`).

        Args:
            folder: The landing folder.
            pattern: The spec's ``source.pattern``.
            marker: The spec's ``detect.marker``.
            poke_interval: Seconds between looks while nothing new is there.
            settle_seconds: Seconds before a file seen for the first time is looked at again
                (``land``'s own settle time; 0: fire on the first look). ``None``, as in a
                trigger deferred before this argument existed: a whole poll.
        """
        super().__init__()
        self.folder = folder
        self.pattern = pattern
        self.marker = marker
        self.poke_interval = poke_interval
        self.settle_seconds = settle_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and arguments, for the triggerer."""
        return (
            "sluice.airflow.sensors.InboxTrigger",
            {
                "folder": self.folder,
                "pattern": self.pattern,
                "marker": self.marker,
                "poke_interval": self.poke_interval,
                "settle_seconds": self.settle_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Look until a candidate is unchanged since the previous look."""
        from sluice.services.landing import local_entries, select

        settle = self.poke_interval if self.settle_seconds is None else self.settle_seconds
        seen: dict[str, str] = {}
        while True:
            entries = await asyncio.to_thread(local_entries, Path(self.folder))
            now = {e.name: e.version for e in select(entries, self.pattern, self.marker)[0]}
            if any(seen.get(name) == version for name, version in now.items()) or (now and settle <= 0):
                yield TriggerEvent(True)
                return
            fresh = any(seen.get(name) != version for name, version in now.items())
            seen = now
            # A new or changed file is looked at again after land's settle time, not a whole
            # poll later: the second look is what a file must pass, so waiting longer only adds latency.
            await asyncio.sleep(min(settle, self.poke_interval) if fresh else self.poke_interval)


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
        **kwargs: Any,
    ) -> None:
        """Wait for files matching ``pattern`` in ``folder``.

        Args:
            folder: The landing folder.
            pattern: The spec's ``source.pattern``.
            marker: The spec's ``detect.marker``.
            spec_path: The pipeline's spec, whose storage is checked too: batches a failed run
                stranded there end the wait at once, so the run finishes them.
            settle_seconds: The spec's ``detect.settle_seconds`` (see :class:`InboxTrigger`).
            **kwargs: FileSensor's.
        """
        super().__init__(filepath=f"{folder.rstrip('/')}/{pattern}", **kwargs)
        self.folder = folder
        self.pattern = pattern
        self.marker = marker
        self.spec_path = spec_path
        self.settle_seconds = settle_seconds

    def poke(self, context: Any) -> bool:
        """Whether the landing folder holds a file ``land`` would consider, or a batch is stranded."""
        # Imported here: the DAG file builds this sensor on every parse, and only a run lists.
        from sluice.services.landing import ready_names

        names = ready_names(Path(self.folder), self.pattern, self.marker)
        if names:
            self.log.info("found %d file(s) to land, first %r", len(names), names[0])
            return True
        if self.spec_path:
            from sluice.airflow.connections import open_pipeline_store
            from sluice.spec.loader import load_spec
            from sluice.steps.ingest import unfinished_batches

            stranded = unfinished_batches(open_pipeline_store(load_spec(self.spec_path)))
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
                trigger=InboxTrigger(self.folder, self.pattern, self.marker, self.poke_interval, self.settle_seconds),
                method_name="execute_complete",
            )
