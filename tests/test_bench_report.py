"""The docs' performance table is generated from bench/results.json and must agree with it."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def _report() -> ModuleType:
    module: ModuleType = load_script(ROOT / "bench" / "report.py")
    return module


RESULTS = {
    "parse": {
        "name": "parse",
        "measured": "DagBag over 100 pipelines",
        "baseline": "100 hand-written files",
        "values": {"sluice_seconds": 4.2, "baseline_seconds": 2.3},
        "ratio": 1.826,
        "target": "<= 1.2x",
        "target_ratio": 1.2,
        "met": False,
        "summary": "4.20 s vs 2.30 s",
        "quick": True,
        "date": "2026-12-03T07:41:17+00:00",
    },
    "tracking": {
        "name": "tracking",
        "measured": "train | log",
        "baseline": "train alone",
        "values": {},
        "ratio": 1.05,
        "target": "<= 1.1x",
        "target_ratio": 1.1,
        "met": True,
        "date": "2026-12-03T08:00:00+00:00",
    },
}


def test_the_table_has_one_row_per_bench_with_ratio_verdict_and_quick_marker() -> None:
    lines = _report().table(RESULTS).splitlines()
    assert lines[0].startswith("| bench | measures | baseline | target | measured here |")
    parse, tracking = lines[2], lines[3]
    assert parse.startswith("| parse | DagBag over 100 pipelines |")
    assert "4.20 s vs 2.30 s = **1.83×**: **missed** (quick run)" in parse and "2026-12-03" in parse
    assert "**1.05×**: met |" in tracking
    assert "train \\| log" in tracking  # a pipe in a text does not split the row


def test_render_replaces_only_the_marked_block() -> None:
    report = _report()
    readme = f"intro\n{report.START}\nold table\n{report.END}\noutro\n"
    out = report.render(readme, RESULTS)
    assert out.startswith("intro\n") and out.endswith(f"{report.END}\noutro\n")
    assert "old table" not in out and "| tracking |" in out


def test_the_docs_table_is_the_one_bench_results_json_gives() -> None:
    report = _report()
    readme = (ROOT / "docs" / "performance.md").read_text()
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    assert report.render(readme, results) == readme, "stale table: run `python bench/report.py`"
    for name, entry in results.items():
        assert f"| {name} |" in readme and {"measured", "baseline", "ratio", "target", "met"} <= set(entry)
