"""Shared fixtures for spec tests: the demo spec as text and data, and a spec writer."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO_SPEC = PROJECT_DIR / "dags" / "flights_delay.pipeline.yaml"


@pytest.fixture
def project_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point SLUICE_PROJECT_DIR at the repository so the demo's feature job resolves."""
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(PROJECT_DIR))
    return PROJECT_DIR


@pytest.fixture
def demo_text() -> str:
    """The demo spec exactly as committed."""
    return DEMO_SPEC.read_text()


@pytest.fixture
def demo_data(demo_text: str) -> dict[str, Any]:
    """The demo spec as a plain dict (a fresh deep copy per test)."""
    return copy.deepcopy(yaml.safe_load(demo_text))


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec (text or dict) as ``<name>.pipeline.yaml`` under tmp_path and return its path."""

    def _write(content: str | dict[str, Any], name: str = "spec", folder: Path | None = None) -> Path:
        target = (folder or tmp_path) / f"{name}.pipeline.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        target.write_text(text)
        return target

    return _write
