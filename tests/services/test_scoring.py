"""The model server answers every request exactly as MLflow's scoring server does, only faster.

Each request below goes both to :class:`sluice.services.scoring.Scorer` and to MLflow's own
``invocations`` for the same loaded model: status and body must match byte for byte, errors
must carry the same message. The common requests must take the fast path (a client sees the
difference as requests/s, ``bench/serving.py``); the rest must be answered by MLflow's path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import free_port

from sluice.services.scoring import Scorer

CSV = "text/csv"
JSON = "application/json"
ROWS: list[dict[str, Any]] = [
    {"x": 1.5, "n": 3, "s": "a", "b": True, "f": 0.25, "opt": 2.0},
    {"x": -2.0, "n": 7, "s": "b", "b": False, "f": 1.5, "opt": None},
    {"x": 0.1, "n": 0, "s": "zz", "b": True, "f": -3.0, "opt": 5.5},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved sklearn pipeline with a signature of every column type the fast path builds."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(ROWS * 4)
    frame["f"] = frame["f"].astype("float32")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["s"]),
                ("num", SimpleImputer(), ["x", "n", "b", "f", "opt"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, [0, 1, 1] * 4)
    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec("double", "x"),
                ColSpec("long", "n"),
                ColSpec("string", "s"),
                ColSpec("boolean", "b"),
                ColSpec("float", "f"),
                ColSpec("double", "opt", required=False),
            ]
        ),
        outputs=Schema([ColSpec("long")]),
    )
    path = tmp_path_factory.mktemp("scoring") / "model"
    mlflow.sklearn.save_model(
        model, str(path), signature=signature, pip_requirements=[], skops_trusted_types=["numpy.dtype"]
    )
    return path


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(model_dir))


def _mlflow_answer(model: Any, body: bytes, content_type: str) -> tuple[int, str]:
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        result = scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())
    except MlflowException as exc:
        return exc.get_http_status_code(), json.loads(exc.serialize_as_json())["message"]
    return result.status, result.response


def _sluice_answer(scorer: Scorer, body: bytes, content_type: str) -> tuple[int, str]:
    from mlflow.exceptions import MlflowException

    try:
        result = scorer(body, content_type)
    except MlflowException as exc:
        return exc.get_http_status_code(), json.loads(exc.serialize_as_json())["message"]
    return result.status, result.body


def _split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}}


def _without(row: dict[str, Any], column: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != column}


FAST: dict[str, tuple[Any, str]] = {
    "records": ({"dataframe_records": ROWS}, JSON),
    "records, charset": ({"dataframe_records": ROWS}, "application/json; charset=UTF-8"),
    "split": (_split(ROWS), JSON),
    "ints and nulls in double columns": (
        {"dataframe_records": [{**r, "x": i, "opt": None} for i, r in enumerate(ROWS)]},
        JSON,
    ),
    "keys in another order per row": ({"dataframe_records": [dict(reversed(r.items())) for r in ROWS]}, JSON),
}
# Built fast, then rejected by the schema check or the model: MLflow's path gives MLflow's error.
REJECTED = {
    "optional column left out": ({"dataframe_records": [_without(r, "opt") for r in ROWS]}, JSON),
    "required column left out": ({"dataframe_records": [_without(r, "x") for r in ROWS]}, JSON),
}
MLFLOW_PATH: dict[str, tuple[Any, str]] = {
    "extra column": ({"dataframe_records": [{**r, "label": 1} for r in ROWS]}, JSON),
    "number as a string": ({"dataframe_records": [{**r, "x": "1.5"} for r in ROWS]}, JSON),
    "bool in a double column": ({"dataframe_records": [{**r, "x": True} for r in ROWS]}, JSON),
    "null in a long column": ({"dataframe_records": [{**r, "n": None} for r in ROWS]}, JSON),
    "rows with other keys": ({"dataframe_records": [ROWS[0], {**ROWS[1], "zzz": 1}, ROWS[2]]}, JSON),
    "no rows": ({"dataframe_records": []}, JSON),
    "split with an index": ({"dataframe_split": {**_split(ROWS)["dataframe_split"], "index": [5, 6, 7]}}, JSON),
    "params": ({"dataframe_records": ROWS, "params": {"a": 1}}, JSON),
    "inputs": ({"inputs": ROWS}, JSON),
    "not json": (b"{nope", JSON),
    "a list": ([1, 2], JSON),
    "csv": (b"x,n,s,b,f,opt\n1.5,3,a,True,0.25,2.0\n", CSV),
    "unknown content type": ({"dataframe_records": ROWS}, "application/xml"),
    "other charset": ({"dataframe_records": ROWS}, "application/json; charset=latin-1"),
}


def _body(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


@pytest.mark.parametrize("case", sorted(FAST))
def test_common_requests_take_the_fast_path_with_mlflows_answer(model: Any, case: str) -> None:
    payload, content_type = FAST[case]
    body = _body(payload)
    scorer = Scorer(model)
    answer = _sluice_answer(scorer, body, content_type)
    assert answer == _mlflow_answer(model, body, content_type) and answer[0] == 200
    assert (scorer.fast, scorer.fallback) == (1, 0)


@pytest.mark.parametrize("case", sorted(MLFLOW_PATH) + sorted(REJECTED))
def test_other_requests_get_mlflows_own_answer(model: Any, case: str) -> None:
    payload, content_type = {**MLFLOW_PATH, **REJECTED}[case]
    body = _body(payload)
    scorer = Scorer(model)
    assert _sluice_answer(scorer, body, content_type) == _mlflow_answer(model, body, content_type)
    assert (scorer.fast, scorer.fallback) == (0, 1)


def test_predictions_are_the_models(model: Any) -> None:
    import pandas as pd

    frame = pd.DataFrame(ROWS).astype({"f": "float32"})
    result = Scorer(model)(json.dumps({"dataframe_records": ROWS}).encode(), JSON)
    assert json.loads(result.body) == {"predictions": model.predict(frame).tolist()}


@pytest.mark.integration
def test_sluice_serve_answers_mlflows_endpoints_and_its_own_info(model_dir: Path, tmp_path: Path) -> None:
    import requests

    port, ready = free_port(), tmp_path / "ready"
    cmd = [sys.executable, "-m", "sluice.cli", "serve", "--model-uri", str(model_dir), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--ready-file", str(ready), "--pipeline", "p", "--version", "4"]
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), (tmp_path / "serve.log").read_text()[-3000:]
        admin = json.loads(ready.read_text())["admin_port"]
        url = f"http://127.0.0.1:{port}"
        for path in ("/ping", "/health"):
            assert requests.get(url + path, timeout=10).status_code == 200
        assert requests.get(url + "/version", timeout=10).text == __import__("mlflow").__version__
        good = requests.post(url + "/invocations", json={"dataframe_records": ROWS}, timeout=30)
        assert good.status_code == 200 and len(good.json()["predictions"]) == len(ROWS)
        csv = requests.post(url + "/invocations", data=MLFLOW_PATH["csv"][0], headers={"Content-Type": CSV}, timeout=30)
        assert csv.status_code == 200 and len(csv.json()["predictions"]) == 1
        bad = requests.post(url + "/invocations", data=b"{nope", headers={"Content-Type": JSON}, timeout=30)
        assert bad.status_code == 400 and "valid JSON" in bad.json()["message"]
        info = requests.get(f"http://127.0.0.1:{admin}/sluice/info", timeout=10).json()
        assert (info["version"], info["pipeline"], info["pid"]) == ("4", "p", str(proc.pid))
        assert (info["fast_requests"], info["mlflow_requests"]) == (1, 2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(30)
    # uvicorn finishes the requests in flight, then re-raises the SIGTERM it caught.
    output = (tmp_path / "serve.log").read_text()
    assert code in (0, -signal.SIGTERM) and "Finished server process" in output, output[-3000:]
