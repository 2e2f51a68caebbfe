"""Write the docs' performance table from ``bench/results.json``.

The table sits between ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->`` in
docs/performance.md and is never edited by hand: ``make bench`` runs the benches, then this.
``--check`` exits 1 when the page's table is not the one the results give
(``tests/test_bench_report.py`` does the same check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
PAGE = ROOT / "docs" / "performance.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def measured_cell(e: dict[str, Any]) -> str:
    """What was measured here: the bench's summary when it has one, then the ratio and verdict."""
    verdict = "met" if e["met"] else "**missed**"
    ratio = f"**{e['ratio']:.3g}×**"
    summary = f"{e['summary']} = {ratio}" if e.get("summary") else ratio
    quick = " (quick run)" if e.get("quick") else ""
    return f"{summary}: {verdict}{quick}"


def table(results: dict[str, dict[str, Any]]) -> str:
    """The Markdown table, one row per entry in the order of the results file."""
    lines = [
        "| bench | measures | baseline | target | measured here | date |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in results.items():
        row = [name, e["measured"], e["baseline"], e["target"], measured_cell(e), str(e.get("date", ""))[:10]]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def render(page: str, results: dict[str, dict[str, Any]]) -> str:
    """``page`` with the text between the markers replaced by the table.

    Raises:
        ValueError: The markers are missing or out of order.
    """
    start, end = page.find(START), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the page has no {START} ... {END} block for the bench table")
    return page[: start + len(START)] + "\n" + table(results) + "\n" + page[end:]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the performance table, or with ``--check`` only say whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args(argv)
    current = PAGE.read_text()
    wanted = render(current, json.loads(RESULTS.read_text()))
    if args.check:
        if wanted != current:
            print("docs/performance.md: the performance table is stale: run `python bench/report.py`")
            return 1
        return 0
    if wanted != current:
        PAGE.write_text(wanted)
        print("docs/performance.md: performance table updated from bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
