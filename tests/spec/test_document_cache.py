"""The cached reading of unchanged specs: what the DAG processor's every parse saves, never a stale spec."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests.spec.corpus import base_text

from sluice.spec import document_cache, yaml_reader
from sluice.spec.errors import SpecError
from sluice.spec.loader import load_spec


@pytest.fixture
def spec(project_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid spec in a fresh folder, with caching allowed (Python's bytecode switch off)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = tmp_path / "dags" / "cached.pipeline.yaml"
    path.parent.mkdir()
    path.write_text(base_text())
    return path


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the specs read from YAML (not from the cache) from now on."""
    reads: list[str] = []
    real = yaml_reader.read_document

    def counting(path: Path, shown: str, raw: bytes | None = None) -> object:
        reads.append(path.name)
        return real(path, shown, raw)

    monkeypatch.setattr("sluice.spec.loader.read_document", counting)
    return reads


def test_an_unchanged_spec_is_read_once_and_loads_the_same(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _reads(monkeypatch)
    first = load_spec(spec)
    assert document_cache.entry_path(spec).is_file()
    assert document_cache.entry_path(spec).parent.name == "__pycache__"
    again = load_spec(spec)
    assert reads == ["cached.pipeline.yaml"]
    assert again.spec == first.spec and again.positions == first.positions
    assert again.issue("deployment.local.port", "x").line == first.issue("deployment.local.port", "x").line


def test_an_edited_spec_is_read_again(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_spec(spec)
    reads = _reads(monkeypatch)
    spec.write_text(base_text().replace("owner: data-eng", "owner: platform"))
    assert load_spec(spec).spec.owner == "platform"
    assert reads == ["cached.pipeline.yaml"]


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty"])
def test_a_damaged_entry_is_a_miss_and_is_rewritten(spec: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    expected = load_spec(spec).spec
    entry = document_cache.entry_path(spec)
    blob = entry.read_bytes()
    entry.write_bytes(
        {
            "truncated": blob[: len(blob) // 2],
            "flipped": blob[:-10] + bytes([blob[-10] ^ 0xFF]) + blob[-9:],
            "garbage": b"\x00" * 200,
            "empty": b"",
        }[damage]
    )
    reads = _reads(monkeypatch)
    assert load_spec(spec).spec == expected
    assert reads == ["cached.pipeline.yaml"]
    assert entry.read_bytes() == blob


def test_a_spec_that_fails_is_never_cached_and_keeps_its_line(spec: Path) -> None:
    spec.write_text(base_text().replace("owner: data-eng", "owner: data-eng\nbogus_key: 1"))
    for _ in range(2):
        with pytest.raises(SpecError) as info:
            load_spec(spec)
        (issue,) = info.value.issues
        assert "bogus_key" in issue.message and issue.line is not None
        assert issue.line == spec.read_text().splitlines().index("bogus_key: 1") + 1
    assert not document_cache.entry_path(spec).exists()


def test_a_cached_reading_the_models_now_refuse_still_names_the_line(spec: Path) -> None:
    """After an upgrade that tightens a rule, the cached data fails validation: the error is placed by a fresh read."""
    bad = base_text().replace("min: 0.65", "min: 7")
    raw = bad.encode()
    # The entry a previous sluice would have written for these bytes (its models accepted min: 7).
    document_cache.put(spec, raw, ({"pipeline": "x", "evaluation": {"gate": {"min": 7}}}, {}))
    spec.write_bytes(raw)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    lines = [i.line for i in info.value.issues]
    assert bad.splitlines().index("  gate: {min: 7, max_regression_vs_champion: 0.01}") + 1 in lines


def test_nothing_is_written_where_python_writes_no_bytecode(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    load_spec(spec)
    assert not document_cache.entry_path(spec).parent.exists()


def test_a_folder_where_no_entry_can_be_written_loads_without_a_cache(
    spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like a read-only DAG folder (a chmod does not stop root): ``__pycache__`` cannot be made."""
    blocker = spec.parent / "__pycache__"
    blocker.write_text("not a folder")
    reads = _reads(monkeypatch)
    for _ in range(2):
        assert load_spec(spec).spec.pipeline == "corpus_case"
    assert reads == ["cached.pipeline.yaml"] * 2  # read each time, never an error
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in spec.parent.iterdir()) == ["__pycache__", "cached.pipeline.yaml"]
