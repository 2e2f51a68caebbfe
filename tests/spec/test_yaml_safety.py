"""The loader reads any file safely: once, bounded, and every refusal names file, line and a fix."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.spec.corpus import DEMO_SPEC, PROJECT_DIR, base_text

from sluice.spec.errors import SpecError
from sluice.spec.loader import load_files, load_spec
from sluice.spec.yaml_reader import MAX_NODES


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


def test_the_file_is_parsed_once_from_the_composed_nodes(project_env, monkeypatch) -> None:
    calls: list[str] = []
    # The spec loader composes with PyYAML's Composer (as SafeLoader does) over libyaml's events.
    real_single = yaml.composer.Composer.get_single_node

    def counting(self):  # type: ignore[no-untyped-def]
        calls.append("compose")
        return real_single(self)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the loader must not parse the text a second time")

    monkeypatch.setattr(yaml.composer.Composer, "get_single_node", counting)
    for name in ("load", "safe_load", "compose", "safe_load_all", "load_all"):
        monkeypatch.setattr(yaml, name, refuse)

    loaded = load_spec(DEMO_SPEC)

    assert calls == ["compose"]
    assert loaded.spec.pipeline == "flights_delay"


def test_an_alias_bomb_is_refused_quickly_at_its_line(project_env, tmp_path) -> None:
    # Ten aliases of ten aliases, nine levels deep: 10**9 values when expanded (PyYAML plus
    # pydantic used to run out of memory after ~40 s).
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.pipeline.yaml"
    path.write_text(base_text() + "\n".join(rows) + "\n")
    first_row = len(base_text().splitlines()) + 1

    started = time.perf_counter()
    err = error_of(path)
    took = time.perf_counter() - started

    (issue,) = err.issues
    assert took < 2
    assert f"more than {MAX_NODES:,} values" in issue.message
    assert issue.line is not None and first_row < issue.line <= first_row + 8
    assert issue.hint


def test_modest_reuse_of_anchors_still_loads(project_env, tmp_path) -> None:
    text = base_text().replace("tags: [demo]", "tags: &t [demo]\ndescription_tags: *t")
    text = text.replace("description_tags: *t\n", "")  # the anchor alone is fine
    text = text.replace(
        "    columns: [sched_dep_time, sched_arr_time, carrier, origin, dest, distance]",
        "    columns: &cols [sched_dep_time, sched_arr_time, carrier, origin, dest, distance]",
    )
    path = tmp_path / "anchors.pipeline.yaml"
    path.write_text(text)
    assert load_spec(path).spec.tags == ["demo"]


def test_dates_stay_text(project_env, tmp_path) -> None:
    path = tmp_path / "dated.pipeline.yaml"
    path.write_text(base_text().replace("owner: data-eng", "owner: 2026-11-29"))
    assert load_spec(path).spec.owner == "2026-11-29"


def test_utf8_with_a_byte_order_mark_loads(project_env, tmp_path) -> None:
    path = tmp_path / "bom.pipeline.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + base_text().encode())
    assert load_spec(path).spec.pipeline == "corpus_case"


def test_a_crashing_file_never_stops_the_next_one(project_env, tmp_path) -> None:
    recursive = tmp_path / "a.pipeline.yaml"
    recursive.write_text(base_text().replace("tags: [demo]", "tags: &t [demo, *t]"))
    report = load_files([recursive, DEMO_SPEC])
    assert [s.spec.pipeline for s in report.specs] == ["flights_delay"]
    assert "recursive alias" in str(report.errors[str(recursive)])


def test_loading_a_spec_imports_neither_the_model_nor_airflow() -> None:
    code = (
        "import sys; from sluice.spec.loader import load_spec; "
        f"load_spec({str(DEMO_SPEC)!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'airflow', 'pyspark', 'mlflow'}))"
    )
    env = {"SLUICE_PROJECT_DIR": str(PROJECT_DIR), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
