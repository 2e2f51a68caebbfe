"""Regenerate (or check) the generated blocks of the docs pages.

Each block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in a page under
``docs/`` and is never edited by hand: ``make docs-generate`` rewrites them, ``--check`` (run
by ``make docs``, part of ``make test``, and by the tests) exits 1 naming the stale ones. The performance table
has its own writer, ``bench/report.py``, because it is rewritten after every ``make bench``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _spec_reference() -> str:
    from sluice.spec.reference import markdown_reference

    return markdown_reference().strip() + "\n"


def _ports() -> str:
    from sluice.settings import ports_markdown_table

    return ports_markdown_table()


def _settings() -> str:
    from sluice.settings import markdown_table

    return markdown_table()


#: (page, block name) -> what the block holds.
BLOCKS: dict[tuple[str, str], Callable[[], str]] = {
    ("spec-reference.md", "spec-reference"): _spec_reference,
    ("operations.md", "ports"): _ports,
    ("operations.md", "settings"): _settings,
}


def block(page: str, name: str) -> str:
    """The current text of block ``name`` in ``docs/<page>``.

    Raises:
        ValueError: When the page has no such block.
    """
    text = (DOCS / page).read_text()
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.S)
    if match is None:
        raise ValueError(f"docs/{page} has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return match.group(1)


def stale() -> list[str]:
    """``page: block`` of every generated block that differs from what it should hold."""
    return [f"docs/{page}: {name}" for (page, name), make in BLOCKS.items() if block(page, name) != make()]


def write() -> list[str]:
    """Rewrite every stale block; returns what changed."""
    changed = stale()
    for (page, name), make in BLOCKS.items():
        path = DOCS / page
        text = path.read_text()
        start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
        head, rest = text.split(start, 1)
        path.write_text(head + start + make() + end + rest.split(end, 1)[1])
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python tools/docs_blocks.py [--check]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated block is stale")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for name in old:
            print(f"stale generated block: {name} (run: make docs-generate)")
        return 1 if old else 0
    for name in write():
        print(f"regenerated {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
