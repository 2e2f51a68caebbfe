"""The deferred half of the inbox wait: a trigger that fires once ``land`` has something to do.

It runs in the triggerer and asks :func:`sluice.services.landing.wake_reasons` (the lister
``land`` uses) on every look; :class:`sluice.airflow.sensors.inbox.InboxFileSensor` defers to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: Archived files the deferred trigger watches (the newest; ``land`` checks them all when it runs).
WATCHED_IN_TRIGGER = 200


class InboxTrigger(BaseTrigger):
    """Fires once ``land`` has something to do: a file kept its size and mtime across two looks
    ``settle_seconds`` apart and is not held, an input is refused, or a watched archive changed."""

    def __init__(
        self,
        folder: str,
        pattern: str,
        marker: str | None = None,
        poke_interval: float = 5.0,
        settle_seconds: float | None = None,
        csv: bool = False,
        watched: dict[str, str] | None = None,
        known_hidden: list[str] | None = None,
    ) -> None:
        """Watch ``folder`` for files matching ``pattern`` (see :func:`wake_reasons`).

        Args:
            folder: The landing folder.
            pattern: The spec's ``source.pattern``.
            marker: The spec's ``detect.marker``.
            poke_interval: Seconds between looks while nothing new is there.
            settle_seconds: Seconds before a file seen for the first time is looked at again
                (``land``'s own settle time; 0: fire on the first look). ``None``, as in a
                trigger deferred before this argument existed: a whole poll.
            csv: Batches are CSV (a file whose last line is cut is held).
            watched: ``{archived path: version}`` of archived files watched for changes.
            known_hidden: Dot-named files already reported (``name/version``).
        """
        super().__init__()
        self.folder = folder
        self.pattern = pattern
        self.marker = marker
        self.poke_interval = poke_interval
        self.settle_seconds = settle_seconds
        self.csv = csv
        self.watched = dict(watched or {})
        self.known_hidden = list(known_hidden or [])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and arguments, for the triggerer."""
        return (
            "sluice.airflow.triggers.inbox.InboxTrigger",
            {
                "folder": self.folder,
                "pattern": self.pattern,
                "marker": self.marker,
                "poke_interval": self.poke_interval,
                "settle_seconds": self.settle_seconds,
                "csv": self.csv,
                "watched": self.watched,
                "known_hidden": self.known_hidden,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Look until something is there for ``land``: settled files only after a second look."""
        from sluice.services.landing import wake_reasons

        settle = self.poke_interval if self.settle_seconds is None else self.settle_seconds
        seen: dict[str, str] | None = {} if settle > 0 else None
        while True:
            reasons, now = await asyncio.to_thread(
                wake_reasons,
                Path(self.folder),
                self.pattern,
                self.marker,
                csv=self.csv,
                watched=self.watched,
                known_hidden=self.known_hidden,
                previous=seen,
            )
            if reasons:
                yield TriggerEvent(True)
                return
            fresh = seen is not None and any(seen.get(name) != version for name, version in now.items())
            if seen is not None:
                seen = now
            # A new or changed file is looked at again after land's settle time, not a whole
            # poll later: the second look is what a file must pass, so waiting longer only adds latency.
            await asyncio.sleep(min(settle, self.poke_interval) if fresh else self.poke_interval)
