"""The forkserver preload: task processes start with the heavy libraries, and the forkserver never dies of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.airflow.runtime.home import embedded_env
from sluice.airflow.runtime.preload import preload


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
        "import sys, sluice.airflow.runtime.preload as p; "
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
    assert env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] == "sluice.airflow.runtime.preload"

    own = embedded_env(tmp_path, {"PATH": "/usr/bin", "AIRFLOW__SCHEDULER__MP_START_METHOD": "fork"})
    assert own["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "fork", "an operator's own setting wins"


WORKER_PROBE = """
import multiprocessing
import sys


def loaded(queue):
    queue.put(sorted(m for m in ("mlflow", "great_expectations", "evidently", "skops.io") if m in sys.modules))


if __name__ == "__main__":
    from airflow.utils.process_utils import set_component_mp_start_method

    set_component_mp_start_method("scheduler")  # what `airflow scheduler` does first
    queue = multiprocessing.Queue()
    worker = multiprocessing.Process(target=loaded, args=(queue,))  # how LocalExecutor starts a worker
    worker.start()
    print(multiprocessing.get_start_method(), *queue.get(timeout=600))
    worker.join()
"""


def test_a_worker_started_the_way_the_scheduler_starts_it_already_has_the_libraries(tmp_path: Path) -> None:
    script = tmp_path / "scheduler_probe.py"
    script.write_text(WORKER_PROBE)
    env = embedded_env(tmp_path, {"PATH": "/usr/bin", "AIRFLOW_HOME": str(tmp_path / "airflow")})
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900, check=True
    )
    # The worker imported none of them itself: they came from the forkserver's preload.
    assert out.stdout.strip().splitlines()[-1].split() == [
        "forkserver",
        "evidently",
        "great_expectations",
        "mlflow",
        "skops.io",
    ], out.stderr[-2000:]
