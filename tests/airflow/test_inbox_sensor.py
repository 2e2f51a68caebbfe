"""The local landing sensor wakes only for what ``land`` would land."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd

from sluice.airflow.sensors import InboxTrigger


def _fires(folder: Path, pattern: str, polls: int = 3, marker: str | None = None) -> bool:
    async def first_event() -> bool:
        trigger = InboxTrigger(str(folder), pattern, marker, poke_interval=0.05)
        try:
            async with asyncio.timeout(0.05 * (polls + 1)):
                async for event in trigger.run():
                    return bool(event.payload)
        except TimeoutError:
            return False
        return False

    return asyncio.run(first_event())


def test_trigger_ignores_folders_links_temporary_files_and_the_archive(tmp_path: Path) -> None:
    (tmp_path / "_processed").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "_processed" / "old.parquet")
    (tmp_path / "x.parquet").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet" / "part-0.parquet")
    (tmp_path / "y.parquet.tmp").write_bytes(b"half")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "_processed" / "old.parquet")

    assert not _fires(tmp_path, "*")
    assert not _fires(tmp_path, "*.parquet")


def test_trigger_fires_for_a_settled_file_and_serializes_to_itself(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "jan.parquet")
    assert _fires(tmp_path, "*.parquet")
    assert not _fires(tmp_path, "*.parquet", marker="{name}.done")
    classpath, kwargs = InboxTrigger(str(tmp_path), "*.parquet", "{name}.done", 3).serialize()
    assert classpath == "sluice.airflow.sensors.InboxTrigger"
    assert kwargs == {"folder": str(tmp_path), "pattern": "*.parquet", "marker": "{name}.done", "poke_interval": 3}
