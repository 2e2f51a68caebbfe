"""Broken specs under the real DAG processor and scheduler: the other pipelines keep running.

``DagBag`` and ``airflow dags list`` do not show what the DAG processor does with an import
error (it marks every DAG of the file stale), so these tests run the real
``airflow dag-processor`` and ``airflow scheduler`` on a fresh Airflow home and read the
metadata database they wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

GOOD = REPO / "dags" / "flights_delay.pipeline.yaml"

# Reads the metadata database of the Airflow home in the environment; prints one JSON line.
STATE = textwrap.dedent(
    """
    import json
    from airflow.models import DagModel, DagRun
    from airflow.models.errors import ParseImportError
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    with create_session() as s:
        needing, _ = DagModel.dags_needing_dagruns(s)
        docs = {m.dag_id: m.data["dag"].get("doc_md") or "" for m in s.query(SerializedDagModel)
                if m.dag_id.endswith("__spec_error")}
        print(json.dumps({
            "docs": docs,
            "dags": {d.dag_id: {"stale": bool(d.is_stale), "import_errors": bool(d.has_import_errors),
                                "description": d.description or "", "tags": sorted(t.name for t in d.tags)}
                     for d in s.query(DagModel)},
            "import_errors": {e.filename: e.stacktrace for e in s.query(ParseImportError)},
            "needing_runs": sorted(d.dag_id for d in needing),
            "runs": sorted(f"{r.dag_id} {r.run_type}" for r in s.query(DagRun)),
        }))
    """
)

EMIT = textwrap.dedent(
    """
    import sys
    from airflow.assets.manager import asset_manager
    from airflow.models import DagModel
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    with create_session() as s:
        s.query(DagModel).filter(DagModel.dag_id == sys.argv[1]).update({"is_paused": False})
        asset = s.query(AssetModel).filter(AssetModel.uri == sys.argv[2]).one()
        asset_manager.register_asset_change(asset=asset, extra={"reason": "test"}, source_is_api=True, session=s)
    """
)


class Home:
    """A fresh Airflow home whose DAG folder is a copy of ``dags/`` plus broken specs."""

    def __init__(self, root: Path, processor_timeout: int = 120) -> None:
        self.dags = root / "dags"
        self.dags.mkdir(parents=True)
        shutil.copy(REPO / "dags" / "load_pipelines.py", self.dags)
        shutil.copy(GOOD, self.dags)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))},
            "AIRFLOW_HOME": str(root / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "1",
            "SLUICE_PROJECT_DIR": str(REPO),
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": str(processor_timeout),
            # What is checked is what shows, not how fast (bench/ measures parse time): a busy
            # machine must not turn a slow parse of the whole corpus into an import error.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(processor_timeout),
        }

    def run(self, *args: str, timeout: int = 300) -> str:
        done = subprocess.run(
            [sys.executable, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def airflow(self, *args: str) -> str:
        return self.run("-m", "airflow", *args)

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.run("-c", STATE).strip().splitlines()[-1]))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if needle in t)


def test_broken_specs_leave_the_other_pipeline_scheduled_by_the_real_dag_processor_and_scheduler(
    tmp_path: Path,
) -> None:
    home = Home(tmp_path)
    good = GOOD.read_text()
    typo = home.dags / "typo.pipeline.yaml"
    typo.write_text(good.replace("pipeline: flights_delay", "pipeline: typo_one").replace("  pattern:", "  patern:"))
    # Passes the spec models but not Airflow (its timetable rejects the cron): caught at compile.
    (home.dags / "cron.pipeline.yaml").write_text(
        good.replace("pipeline: flights_delay", "pipeline: cron_one").replace(
            "poll_seconds: 5, timeout_seconds: 3600}", "poll_seconds: 5, timeout_seconds: 3600, schedule: '@hourlyy'}"
        )
    )
    (home.dags / "syntax.pipeline.yaml").write_text("pipeline: [unclosed\n")
    home.airflow("db", "migrate")
    home.airflow("dag-processor", "--num-runs", "1")

    state = home.state()
    assert state["import_errors"] == {}, "an import error marks every DAG of load_pipelines.py stale"
    for role in ("ingest", "train", "monitor"):
        dag = state["dags"][f"flights_delay__{role}"]
        assert dag == dag | {"stale": False, "import_errors": False}, dag
    assert not any(d.startswith(("typo_one", "cron_one")) for d in state["dags"]), "no half-built pipeline"
    typo_dag = state["dags"]["typo__spec_error"]
    assert "sluice:spec-error" in typo_dag["tags"]
    assert f"typo.pipeline.yaml:{_line_of(typo, 'patern')}:" in typo_dag["description"]
    assert "did you mean 'pattern'?" in typo_dag["description"]
    assert "syntax.pipeline.yaml:" in state["dags"]["syntax__spec_error"]["description"]
    cron = home.dags / "cron.pipeline.yaml"
    assert f"cron.pipeline.yaml:{_line_of(cron, '@hourlyy')}:" in state["dags"]["cron__spec_error"]["description"]

    # The scheduler still creates runs of the healthy pipeline: a drift event starts its train DAG.
    home.run("-c", EMIT, "flights_delay__train", "sluice://flights_delay/drift")
    assert "flights_delay__train" in home.state()["needing_runs"]
    home.airflow("scheduler", "--num-runs", "2")
    assert "flights_delay__train asset_triggered" in home.state()["runs"]


def test_every_bad_spec_of_the_corpus_shows_in_airflow_with_its_file_and_line_and_hides_nothing(
    tmp_path: Path,
) -> None:
    from tests.spec.corpus import bad_specs

    home = Home(tmp_path, processor_timeout=900)
    # The cases only the model-import checks catch are valid to the DAG processor by design.
    cases = [case for case in bad_specs() if not case.needs_import]
    for case in cases:
        case.write(home.dags)
    home.airflow("db", "migrate")
    home.airflow("dag-processor", "--num-runs", "1")

    state = home.state()
    assert state["import_errors"] == {}
    for role in ("ingest", "train", "monitor"):
        assert state["dags"][f"flights_delay__{role}"] | {"description": ""} == {
            "stale": False,
            "import_errors": False,
            "description": "",
            "tags": state["dags"][f"flights_delay__{role}"]["tags"],
        }
    assert not any(d.startswith("corpus_case") for d in state["dags"]), "no half-built pipeline"
    missing = [c.name for c in cases if f"{c.name}__spec_error" not in state["dags"]]
    assert missing == [], f"{len(missing)} broken specs left no trace in Airflow: {missing[:10]}"
    wrong = []
    for case in cases:
        doc = state["docs"][f"{case.name}__spec_error"]
        where = f"{case.name}.pipeline.yaml:{case.line}:" if case.line else f"{case.name}.pipeline.yaml"
        if where not in doc or case.fragment not in doc or "Traceback" in doc:
            wrong.append((case.name, where, case.fragment, doc[:300]))
    assert wrong == [], f"{len(wrong)} of {len(cases)}: {wrong[:5]}"
