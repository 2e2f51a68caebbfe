"""Saving and loading a model in a task process does not flood the log with Airflow warnings.

skops, on its first import, looks up ~230 SciPy ufuncs in every loaded module; in a task
process Airflow's deprecated shim modules answer each lookup with a DeprecatedImportWarning
(~1,160 log lines). Each case runs in a fresh interpreter, as a task process is one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Three fresh interpreters with Airflow, MLflow and scikit-learn: about a minute.
pytestmark = pytest.mark.integration

# The shim modules a task process has loaded (dag.test() and the task runner import them).
PRELUDE = """
import importlib, warnings
import airflow.sdk
for name in ("airflow.utils.timezone", "airflow.utils.trigger_rule", "airflow.utils.entry_points",
             "airflow.serialization.serde", "airflow.utils.operator_resources"):
    importlib.import_module(name)
caught = warnings.catch_warnings(record=True)
seen = caught.__enter__()
warnings.simplefilter("always")
"""
EPILOGUE = """
caught.__exit__(None, None, None)
print("WARNINGS", sum("airflow" in str(w.message) and "deprecated" in str(w.message) for w in seen))
"""

SAVE = """
import numpy as np, pandas as pd, mlflow.sklearn
from sluice.steps.train import library_types, quiet_skops_module_scan
from sklearn.linear_model import LogisticRegression
X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
model = LogisticRegression().fit(X, np.arange(20) % 2)
trusted = library_types(model)
with quiet_skops_module_scan():
    mlflow.sklearn.save_model(model, MODEL, serialization_format="skops", skops_trusted_types=trusted)
"""
LOAD = """
import mlflow.sklearn
from sluice.steps.train import quiet_skops_module_scan
with quiet_skops_module_scan():
    model = mlflow.sklearn.load_model(MODEL)
print("PREDICTS", len(model.predict(__import__("pandas").DataFrame({"a": [1.0], "b": [2.0]}))))
"""
# Then the same process imports skops again, unguarded: the flood the guard prevents.
LOUD = """
import sys
for name in [m for m in sys.modules if m.startswith("skops")]:
    del sys.modules[name]
with warnings.catch_warnings(record=True) as loud:
    warnings.simplefilter("always")
    import skops.io
print("UNGUARDED", len(loud))
"""


def _run(body: str, model: Path) -> tuple[int, str]:
    code = f"MODEL = {str(model)!r}\n" + PRELUDE + body + EPILOGUE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    count = int(out.stdout.rsplit("WARNINGS", 1)[1].split()[0])
    return count, out.stdout


def test_training_and_evaluating_a_model_raise_no_airflow_deprecation_warning(tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert _run(SAVE, model)[0] == 0
    count, out = _run(LOAD + LOUD, model)
    assert count == 0
    assert "PREDICTS 1" in out
    assert int(out.split("UNGUARDED", 1)[1].split()[0]) > 500, "skops no longer scans: drop the guard?"
