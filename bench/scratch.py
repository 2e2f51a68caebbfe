"""A scratch copy of the project for the benches that run the embedded Airflow."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "include") not in sys.path:
    sys.path.insert(0, str(ROOT / "include"))

PIPELINE = "flights_delay"


def scratch_project(root: Path) -> Path:
    """Copy the DAG folder, the feature job and the settings to ``root``; write the reference tables.

    The demo pipeline's model server gets a free port, so a bench never meets a running demo.
    """
    from demo.producer import write_reference
    from sluice.airflow.runtime.standalone import free_port

    (root / "include").mkdir(parents=True)
    shutil.copytree(ROOT / "dags", root / "dags")
    shutil.copytree(ROOT / "include" / "features", root / "include" / "features")
    for name in ("airflow_settings.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    write_reference(root / "data" / "reference")
    spec = root / "dags" / f"{PIPELINE}.pipeline.yaml"
    spec.write_text(spec.read_text().replace("port: 5055", f"port: {free_port()}"))
    return root


@contextmanager
def in_project(project: Path) -> Iterator[None]:
    """Make this process read ``project`` (its spec paths, batches, MLflow store) while inside.

    ``make bench`` exports ``SLUICE_PROJECT_DIR`` (the checkout), which would win over the
    scratch project's own ``pyproject.toml``.
    """
    with mock.patch.dict(os.environ, {"SLUICE_PROJECT_DIR": str(project)}):
        yield
