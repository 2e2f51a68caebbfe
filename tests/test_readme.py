"""The README stays true: its spec reference is current and its tutorial works."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sluice.spec.reference import markdown_reference
from tests.conftest import REPO, fresh_mlflow_store

README = (REPO / "README.md").read_text()


def tutorial_files() -> dict[str, str]:
    """``{path: content}`` of every ``<!-- file: path -->`` block in the README."""
    pattern = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)
    return {m["path"]: m["body"] for m in pattern.finditer(README)}


def tutorial_project(root: Path) -> Path:
    for path, body in tutorial_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body)
    (root / "pyproject.toml").write_text("[project]\nname = 'tutorial'\n")
    return root


def test_spec_reference_in_readme_is_generated_from_the_models() -> None:
    start = README.index("<!-- spec-reference:start -->\n") + len("<!-- spec-reference:start -->\n")
    end = README.index("<!-- spec-reference:end -->")
    assert README[start:end].strip() == markdown_reference().strip(), "run: ./sluice reference"


def test_readme_quick_start_is_the_two_make_commands() -> None:
    quick = README[README.index("## Quick start") : README.index("## Tutorial")]
    assert "make demo" in quick and "make test" in quick
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_tutorial_spec_lints_and_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from sluice.cli import main

    root = tutorial_project(tmp_path)
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(root))
    assert set(tutorial_files()) == {"include/features/departures.py", "dags/departure_delay.pipeline.yaml"}
    assert main(["lint", str(root / "dags")]) == 0
    assert main(["plan", str(root / "dags" / "departure_delay.pipeline.yaml")]) == 0
    out = capsys.readouterr().out
    assert "departure_delay__ingest" in out and "departure_delay__train" in out


@pytest.mark.integration
def test_tutorial_pipeline_builds_features_and_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store_template: Path
) -> None:
    from demo.producer import month_frame
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.evaluate import evaluate_candidate
    from sluice.steps.features import build_features
    from sluice.steps.ingest import land_new_files
    from sluice.steps.train import train_candidate
    from sluice.steps.validate import validate_batch

    root = tutorial_project(tmp_path)
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow_store(mlflow_store_template, root))
    loaded = load_spec(root / "dags" / "departure_delay.pipeline.yaml")
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), "departure_delay")
    landing = loaded.resolve(loaded.spec.source.uri)
    landing.mkdir(parents=True)
    month_frame(1, sample=2000).to_parquet(landing / "m1.parquet")
    (batch,) = land_new_files(str(landing / "*.parquet"), store, "tutorial").new
    assert validate_batch(store, batch, loaded.spec.validation, "parquet").status == "accepted"
    features = build_features(loaded, store)
    assert features.rows > 1500
    trained = train_candidate(loaded, store, features, "departure_delay__train", "tutorial-run")
    decision = evaluate_candidate(loaded, store, trained, "tutorial-run")
    assert decision.verdict == "pass", decision.reason
    shutil.rmtree(root / "data", ignore_errors=True)
