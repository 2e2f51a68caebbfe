"""The forkserver preload: task processes start with the heavy libraries, and the forkserver never dies of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.airflow.home import embedded_env
from sluice.airflow.preload import preload


def test_a_module_that_fails_or_exits_is_named_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "fails_on_import.py").write_text("raise RuntimeError('broken optional dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    loaded = preload(("exits_on_import", "fails_on_import", "no_such_module_here", "json"))

    assert loaded == ["json"], "one bad module must not stop the others (or the forkserver)"
    err = capsys.readouterr().err
    assert "exits_on_import not preloaded (SystemExit" in err
    assert "fails_on_import not preloaded (RuntimeError: broken optional dependency)" in err
    assert "no_such_module_here not preloaded (ModuleNotFoundError" in err


def test_a_forkserver_shaped_process_survives_the_preload_and_a_later_great_expectations_import() -> None:
    # The forkserver runs as `python -c ...` (a __main__ without a file), and so do the tasks
    # forked below it; pyspark.sql.connect, imported by Great Expectations, exits such a process.
    probe = (
        "import sys, sluice.airflow.preload as p; "
        "print(','.join(m for m in p.PRELOADED if m not in sys.modules) or 'all-loaded'); "
        "import pyspark.sql.connect.utils as u; u.check_dependencies('pyspark.sql.connect')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["all-loaded"], out.stderr[-2000:]
    assert "not preloaded" not in out.stderr
    # What pyspark.sql.connect checks on import (in a task's first `import great_expectations`
    # too) fails as in any script (a missing optional package) instead of exiting with 0.
    assert "Skipping doctests" not in out.stderr and out.returncode == 1, out.stderr[-2000:]


def test_the_embedded_scheduler_forks_tasks_from_the_preloaded_forkserver_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    env = embedded_env(tmp_path, {"PATH": "/usr/bin"})
    assert env["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] == "sluice.airflow.preload"

    own = embedded_env(tmp_path, {"PATH": "/usr/bin", "AIRFLOW__SCHEDULER__MP_START_METHOD": "fork"})
    assert own["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "fork", "an operator's own setting wins"
