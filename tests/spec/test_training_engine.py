"""``training.engine: spark``: a spec that cannot train on Spark is refused at load, naming the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.spec.corpus import base_text

from sluice.spec.checks import lint_checks
from sluice.spec.errors import SpecError
from sluice.spec.loader import load_spec

DEMO_TRAINING = (
    "  model: sklearn.ensemble.HistGradientBoostingClassifier\n"
    "  params: {max_iter: 200, learning_rate: 0.1, random_state: 42}\n"
)
SPARK_TRAINING = (
    "  engine: spark\n  model: xgboost.spark.SparkXGBClassifier\n"
    "  params: {n_estimators: 50, max_depth: 4, num_workers: 1}\n"
)


def spec_text(training: str = SPARK_TRAINING, extra: str = "") -> str:
    text = base_text()
    assert text.count(DEMO_TRAINING) == 1
    return text.replace(DEMO_TRAINING, training + extra)


def refused(tmp_path: Path, text: str) -> tuple[str, str, str, str]:
    """The one issue of ``text``: where, message + hint, the line it points at, and the issue as printed."""
    path = tmp_path / "spec.pipeline.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (issue,) = info.value.issues
    assert issue.file.endswith("spec.pipeline.yaml") and issue.line is not None
    return issue.where, issue.message + " | " + issue.hint, text.splitlines()[issue.line - 1], str(issue)


def test_the_default_engine_is_local_and_a_spark_spec_loads_and_lints(project_env: Path, tmp_path: Path) -> None:
    path = tmp_path / "spec.pipeline.yaml"
    path.write_text(base_text())
    assert load_spec(path).spec.training.engine == "local"
    path.write_text(spec_text())
    loaded = load_spec(path)
    assert loaded.spec.training.engine == "spark"
    assert lint_checks(loaded) == [], "xgboost.spark imports; its params and the metric were checked at load"


def test_a_scikit_learn_model_on_the_spark_engine_is_refused(tmp_path: Path) -> None:
    training = "  engine: spark\n" + DEMO_TRAINING
    where, text, line, printed = refused(tmp_path, spec_text(training))
    assert where == "training.model" and line.strip().startswith("model: sklearn")
    assert "xgboost.spark.SparkXGBClassifier" in text and "engine: local" in text
    assert printed.startswith(str(tmp_path / "spec.pipeline.yaml") + ":")


def test_a_spark_model_on_the_local_engine_is_refused(tmp_path: Path) -> None:
    training = SPARK_TRAINING.replace("  engine: spark\n", "")
    where, text, line, _ = refused(tmp_path, spec_text(training))
    assert where == "training.model" and "model: xgboost.spark" in line
    assert "engine: spark" in text


def test_a_param_sluice_does_not_pass_is_refused_with_the_close_name(tmp_path: Path) -> None:
    training = SPARK_TRAINING.replace("max_depth: 4", "max_dept: 4")
    where, text, line, _ = refused(tmp_path, spec_text(training))
    assert where == "training.params.max_dept" and "max_dept" in line
    assert "did you mean 'max_depth'" in text
    # Columns are sluice's to set: a features_col would train on other columns than it serves.
    where, text, _, _ = refused(tmp_path, spec_text(SPARK_TRAINING.replace("num_workers: 1", "features_col: x")))
    assert where == "training.params.features_col" and "n_estimators" in text


def test_num_workers_must_be_a_count_of_tasks(tmp_path: Path) -> None:
    where, text, line, _ = refused(tmp_path, spec_text(SPARK_TRAINING.replace("num_workers: 1", "num_workers: 0")))
    assert where == "training.params.num_workers" and "num_workers: 0" in line and "at least 1" in text


def test_a_regressor_with_a_classification_metric_is_refused(tmp_path: Path) -> None:
    training = SPARK_TRAINING.replace("SparkXGBClassifier", "SparkXGBRegressor")
    where, text, line, _ = refused(tmp_path, spec_text(training))
    assert where == "training.model" and "SparkXGBRegressor" in line
    assert "roc_auc" in text and "SparkXGBClassifier" in text


@pytest.mark.parametrize(
    ("extra", "key"),
    [("  max_memory_gb: 4\n", "max_memory_gb"), ("  refit: after_gate\n", "refit")],
)
def test_settings_of_the_local_fit_are_refused_on_spark(tmp_path: Path, extra: str, key: str) -> None:
    where, text, line, _ = refused(tmp_path, spec_text(SPARK_TRAINING, extra))
    assert where == f"training.{key}" and line.strip().startswith(f"{key}:")
    assert "engine 'spark'" in text and f"remove {key}" in text


def test_a_local_xgboost_model_lints_with_its_params_and_a_misspelt_one_is_named(
    project_env: Path, tmp_path: Path
) -> None:
    """XGBoost's scikit-learn classes take ``**kwargs``: their params are still checked by name."""
    local = "  model: xgboost.XGBClassifier\n  params: {n_estimators: 50, max_depth: 4}\n"
    path = tmp_path / "spec.pipeline.yaml"
    path.write_text(spec_text(local))
    assert lint_checks(load_spec(path)) == []
    path.write_text(spec_text(local.replace("max_depth", "max_dept")))
    (issue,) = lint_checks(load_spec(path))
    assert "max_dept" in issue.message + issue.hint and "max_depth" in issue.message + issue.hint
