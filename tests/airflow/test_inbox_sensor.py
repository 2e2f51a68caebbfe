"""The local landing sensor wakes only for what ``land`` would land."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from sluice.airflow.triggers.inbox import InboxTrigger
from sluice.services.landing import HIDDEN_GRACE_SECONDS


def _fires(folder: Path, pattern: str, polls: int = 3, marker: str | None = None, **kwargs: Any) -> bool:
    async def first_event() -> bool:
        trigger = InboxTrigger(str(folder), pattern, marker, poke_interval=0.05, **kwargs)
        try:
            async with asyncio.timeout(0.05 * (polls + 1)):
                async for event in trigger.run():
                    return bool(event.payload)
        except TimeoutError:
            return False
        return False

    return asyncio.run(first_event())


def test_trigger_ignores_temporary_files_and_the_archive(tmp_path: Path) -> None:
    (tmp_path / "_processed").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "_processed" / "old.parquet")
    (tmp_path / "y.parquet.tmp").write_bytes(b"half")
    (tmp_path / ".z.parquet").write_bytes(b"being written, renamed soon")

    assert not _fires(tmp_path, "*")
    assert not _fires(tmp_path, "*.parquet")


def test_a_refused_input_wakes_the_trigger_so_it_is_reported_within_one_poll(tmp_path: Path) -> None:
    """Before, a symlink, a folder or a dot-named file never woke it: the refusal waited for an unrelated file."""
    folder = tmp_path / "x.parquet"
    folder.mkdir()
    assert _fires(tmp_path, "*.parquet"), "a matching folder"
    folder.rmdir()
    (tmp_path / "link.parquet").symlink_to(tmp_path / "elsewhere.bin")
    assert _fires(tmp_path, "*.parquet"), "a symlink"
    (tmp_path / "link.parquet").unlink()
    hidden = tmp_path / ".jan.parquet"
    hidden.write_bytes(b"left there")
    os.utime(hidden, (time.time() - HIDDEN_GRACE_SECONDS - 5,) * 2)
    assert _fires(tmp_path, "*.parquet"), "a dot-named file left alone past the grace time"
    version = f"{hidden.stat().st_size}:{hidden.stat().st_mtime_ns}"
    assert not _fires(tmp_path, "*.parquet", known_hidden=[f".jan.parquet/{version}"]), "reported once"


def test_a_held_file_does_not_wake_the_trigger_and_a_changed_archive_does(tmp_path: Path) -> None:
    (tmp_path / "jan.csv").write_bytes(b"a,b\n1,2\n3,")  # cut mid-line
    assert not _fires(tmp_path, "*.csv", csv=True)
    (tmp_path / "jan.csv").unlink()
    archived = tmp_path / "_processed" / "feb.csv"
    archived.parent.mkdir()
    archived.write_bytes(b"a,b\n1,2\n")
    version = f"{archived.stat().st_size}:{archived.stat().st_mtime_ns}"
    assert not _fires(tmp_path, "*.csv", csv=True, watched={str(archived): version})
    with archived.open("ab") as fh:
        fh.write(b"3,4\n")
    assert _fires(tmp_path, "*.csv", csv=True, watched={str(archived): version})


def test_trigger_fires_for_a_settled_file_and_serializes_to_itself(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "jan.parquet")
    assert _fires(tmp_path, "*.parquet")
    assert not _fires(tmp_path, "*.parquet", marker="{name}.done")
    classpath, kwargs = InboxTrigger(str(tmp_path), "*.parquet", "{name}.done", 3).serialize()
    assert classpath == "sluice.airflow.triggers.inbox.InboxTrigger"
    assert kwargs == {
        "folder": str(tmp_path),
        "pattern": "*.parquet",
        "marker": "{name}.done",
        "poke_interval": 3,
        "settle_seconds": None,
        "csv": False,
        "watched": {},
        "known_hidden": [],
    }
    assert InboxTrigger(**kwargs).settle_seconds is None  # a trigger deferred before settle_seconds still runs


def _seconds_to_fire(folder: Path, settle_seconds: float | None, poke_interval: float = 30.0) -> float:
    async def first_event() -> float:
        started = asyncio.get_running_loop().time()
        trigger = InboxTrigger(str(folder), "*.parquet", None, poke_interval, settle_seconds)
        async with asyncio.timeout(10):
            async for _ in trigger.run():
                break
        return asyncio.get_running_loop().time() - started

    return asyncio.run(first_event())


def test_a_new_file_is_looked_at_again_after_the_settle_time_not_a_whole_poll(tmp_path: Path) -> None:
    # Landing latency: the second look comes land's settle time after the first, so a settled
    # file wakes the pipeline after 0.2 s here, not after the 30 s poll.
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "jan.parquet")
    assert _seconds_to_fire(tmp_path, settle_seconds=0.2) < 5
    assert _seconds_to_fire(tmp_path, settle_seconds=0) < 5  # 0: one look, as land does


def test_a_file_still_being_written_does_not_fire(tmp_path: Path) -> None:
    async def writer_and_trigger() -> bool:
        path = tmp_path / "feb.parquet"
        trigger = InboxTrigger(str(tmp_path), "*.parquet", None, poke_interval=30.0, settle_seconds=0.1)

        async def grow() -> None:
            for i in range(30):
                path.write_bytes(b"x" * (i + 1))
                await asyncio.sleep(0.03)

        writing = asyncio.create_task(grow())
        try:
            async with asyncio.timeout(0.7):
                async for _ in trigger.run():
                    return True
        except TimeoutError:
            return False
        finally:
            writing.cancel()
        return False

    assert not asyncio.run(writer_and_trigger())
