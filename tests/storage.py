"""Tests look at the local backend's files directly: what a user sees on disk."""

from __future__ import annotations

from pathlib import Path

from sluice.services.storage import PipelineStore


def local(store: PipelineStore, key: str = "") -> Path:
    """The local path of ``key`` in a store on the local backend."""
    return Path(store.location(key))
