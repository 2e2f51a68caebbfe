"""The DAG loader's safety net: a pipeline that fails to build is replaced, whole, by its error DAG."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sluice.airflow import render
from sluice.airflow.loader import SPEC_ERROR_TAG, build_all
from tests.conftest import DEMO_SPEC, REPO


def test_a_pipeline_that_fails_to_render_is_replaced_by_its_error_dag_and_the_others_are_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DEMO_SPEC, dags)
    good = DEMO_SPEC.read_text()
    (dags / "other.pipeline.yaml").write_text(
        good.replace("pipeline: flights_delay", "pipeline: other")
        .replace("data/landing/flights", "data/landing/other")
        .replace("port: 5055", "port: 5066")
    )
    real = render.RENDERERS["train"]

    def broken(step, plan):  # type: ignore[no-untyped-def]
        if plan.pipeline == "other":
            raise RuntimeError("renderer bug")
        return real(step, plan)

    monkeypatch.setattr(render, "RENDERERS", {**render.RENDERERS, "train": broken})
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    built = build_all(dags)

    assert {"flights_delay__ingest", "flights_delay__train", "flights_delay__monitor"} <= set(built)
    assert len(built["flights_delay__train"].tasks) > 5
    assert not [d for d in built if d.startswith("other__") and d != "other__spec_error"], "no half-built pipeline"
    error = built["other__spec_error"]
    assert SPEC_ERROR_TAG in error.tags
    assert "cannot build DAG other__train" in error.description and "renderer bug" in error.description
    assert [t.task_id for t in error.tasks] == ["spec_error"]
