"""The harness opens the way to PostgreSQL's data folder through nested private temporary folders."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

from demo.production_stack import _let_others_through


def test_every_private_folder_up_to_the_temporary_root_gets_search_permission() -> None:
    # As under pytest-xdist: the session's folder, a worker's folder inside it, the stack's below.
    outer = Path(tempfile.mkdtemp(prefix="sluice-outer-"))
    try:
        inner = Path(tempfile.mkdtemp(dir=outer))
        data = inner / "stack" / "postgres"
        data.parent.mkdir(mode=0o700)
        data.mkdir(mode=0o700)
        _let_others_through(data)
        for folder in (data.parent, inner, outer):
            mode = folder.stat().st_mode
            assert mode & stat.S_IXOTH and not mode & stat.S_IROTH, f"{folder}: search, not read"
        # Above them, up to /tmp: the test session's own private folder (pytest's TMPDIR) too.
        assert all(f.stat().st_mode & stat.S_IXOTH for f in outer.parents)
    finally:
        shutil.rmtree(outer)
