"""Shared fixtures. Airflow reads its home at import, so the test home is set here, first."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# A pytest-xdist worker's __main__ has neither __spec__ nor __file__, which pyspark.sql.connect
# (imported by Great Expectations) takes for a doctest run without Spark Connect: it calls
# sys.exit(0) on import. A worker is a real program, so give its __main__ a file name.
if not hasattr(sys.modules["__main__"], "__file__") and getattr(sys.modules["__main__"], "__spec__", None) is None:
    sys.modules["__main__"].__file__ = "<pytest-xdist worker>"

REPO = Path(__file__).resolve().parents[1]
DEMO_SPEC = REPO / "dags" / "flights_delay.pipeline.yaml"

# Every temporary file of the session, ours and the libraries' (MLflow's model downloads and
# database locks, sluice's object-store scratch, subprocesses' too, through TMPDIR), goes under
# one folder that the session removes: a run leaves nothing in /tmp.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="sluice-tests-"))
os.environ["TMPDIR"] = str(_SESSION_TMP)
tempfile.tempdir = None
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="sluice-test-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(_AIRFLOW_HOME / "dags"),
        "AIRFLOW_CONN_FS_DEFAULT": '{"conn_type": "fs", "extra": {"path": "/"}}',
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        # The fault hooks (sluice.services.faults) read their variables only behind this switch.
        "SLUICE_TEST_FAULTS": "1",
    }
)


#: xdist groups by folder (``make test`` runs two pytest-xdist workers). The tests that run the
#: whole loop under real Airflow processes or kill processes on purpose go, one after the other,
#: to one worker ("serial": two schedulers on the same two cores would only slow each other).
#: The production-shape tests share one stack of a dozen servers (a session fixture: one per
#: worker) and go to one worker as one group ("production"). The largest group is handed out
#: first, so the two long groups start at once on the two workers; every other test is a unit of
#: its own and fills the gaps.
XDIST_GROUPS = {"tests/e2e/": "serial", "tests/faults/": "serial", "tests/production/": "production"}
#: Markers whose tests must live in a grouped folder.
GROUPED_MARKERS = ("e2e", "production")
#: The fast tier (``make test-fast``, marker ``fast``): the unmarked tests of these folders and
#: files, which start no process (no Airflow, no Spark JVM, no server). A fast test that tries
#: to start one fails, naming this list (see :func:`_fast_tier_starts_no_process`).
FAST_TIER = (
    "tests/spec/",
    "tests/plan/",
    "tests/airflow/test_launcher_output.py",
    "tests/airflow/test_render_landing.py",
    "tests/airflow/test_render_owner.py",
    "tests/airflow/test_render_schedule.py",
    "tests/airflow/test_render_tasks.py",
    "tests/steps/test_records.py",
    "tests/test_settings.py",
    "tests/test_code_shape.py",
    "tests/test_bench_report.py",
    "tests/test_docs.py",
    "tests/production/test_kit_config.py",
    "tests/demo/test_run_production.py",
    "tests/services/test_serving_metrics.py",
    "tests/steps/test_deploy_command.py",
)
#: What the standard library runs on import to learn the platform (``platform.architecture``
#: runs ``file``, ``ctypes.util`` runs ``ldconfig``): allowed in the fast tier.
PLATFORM_PROBES = frozenset({"file", "uname", "ldconfig"})
#: Markers of the tiers that start real processes: never part of the fast tier.
SLOW_MARKERS = ("integration", "e2e", "faults", "production", "process")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Group the tests of :data:`XDIST_GROUPS` (``--dist loadgroup``'s own marker grouping is inert here).

    xdist 3.8 groups ``xdist_group`` tests by a suffix it writes to ``item._nodeid``; pytest 9 reads
    ``item._id``, so the suffix never reaches the controller and every test is scheduled alone: two
    Airflow stacks at once, and each worker starting a production stack of its own.
    """
    from xdist.scheduler import LoadScopeScheduling

    class FolderGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return next((group for folder, group in XDIST_GROUPS.items() if nodeid.startswith(folder)), nodeid)

    return FolderGroups(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the fast tier; refuse an end-to-end or production test outside its group's folder.

    (Outside its folder, it would run beside the others.)
    """
    for item in items:
        if item.nodeid.startswith(FAST_TIER) and not any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.fast)
    misplaced = [
        item.nodeid
        for item in items
        if any(item.get_closest_marker(m) for m in GROUPED_MARKERS) and not item.nodeid.startswith(tuple(XDIST_GROUPS))
    ]
    if misplaced:
        raise pytest.UsageError(
            "e2e/production tests belong under " + ", ".join(XDIST_GROUPS) + ": move " + ", ".join(misplaced)
        )


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``fast`` test that starts a process fails at once, saying so (the tier's promise)."""
    if request.node.get_closest_marker("fast") is None:
        return

    start = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        program = Path(str(args if isinstance(args, (str, bytes, os.PathLike)) else args[0])).name
        if program in PLATFORM_PROBES:
            return start(self, args, *rest, **kwargs)  # type: ignore[no-any-return]
        raise AssertionError(
            f"{request.node.nodeid} is in the fast tier (tests/conftest.py FAST_TIER) but starts {program}: "
            "mark it process (or integration), or take its file out of FAST_TIER"
        )

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop Spark (if a test started it); remove the test Airflow home and every temporary file."""
    if "pyspark" in sys.modules:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


def load_script(path: Path) -> Any:
    """The module of a script that is not in a package (``bench/report.py``, ``tools/docs_blocks.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) for dag.test()."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=300,
    )
    return _AIRFLOW_HOME


def demo_spec_dict() -> dict[str, Any]:
    """The demo spec as a dict, to derive test specs from."""
    return dict(yaml.safe_load(DEMO_SPEC.read_text()))


class Project:
    """A throwaway sluice project: dags/, the feature job, reference data, its own MLflow."""

    def __init__(self, root: Path, dags: Path) -> None:
        self.root = root
        # dag.test() re-parses Airflow's configured DAGs folder, so specs go there.
        self.dags = dags
        self.landing = root / "data" / "landing" / "flights"
        shutil.rmtree(dags, ignore_errors=True)
        dags.mkdir(parents=True)
        root.mkdir(parents=True, exist_ok=True)
        (root / "pyproject.toml").write_text("[project]\nname = 'sluice-test-project'\n")
        (root / "include" / "features").mkdir(parents=True)
        shutil.copy(REPO / "include" / "features" / "flights.py", root / "include" / "features" / "flights.py")
        shutil.copy(REPO / "dags" / "load_pipelines.py", self.dags / "load_pipelines.py")

    def write_spec(self, name: str = "flights_delay", **overrides: Any) -> Path:
        """Write ``dags/<name>.pipeline.yaml`` from the demo spec with top-level overrides."""
        spec = demo_spec_dict()
        spec["pipeline"] = name
        spec.update(overrides)
        path = self.dags / f"{name}.pipeline.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite store, made once (a migration takes ~10 s here)."""
    from sluice.services.tracking import init_store

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    init_store(f"sqlite:///{path}")
    return path


def fresh_mlflow_store(template: Path, folder: Path) -> str:
    """Copy the migrated template into ``folder``; return its URI (what bootstrap would make)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store_template: Path) -> Iterator[Project]:
    """A fresh project with its own MLflow store; any model server it starts is stopped."""
    proj = Project(tmp_path / "project", Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]))
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(proj.root))
    store = fresh_mlflow_store(mlflow_store_template, proj.root / ".sluice")
    # mlflow.set_registry_uri() exports MLFLOW_REGISTRY_URI: pin both so nothing outlives the test.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store)
    yield proj
    stop_model_servers(proj.root)


def stop_model_servers(project_root: Path) -> None:
    """Stop every model server started for ``project_root``, recorded or orphaned."""
    import psutil

    from sluice.services import processes

    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmd = proc.info["cmdline"] or []
        if "sluice.cli" in cmd and "serve" in cmd and proc.info["cwd"] == str(project_root):
            processes.stop_group(proc.info["pid"])


class S3Server:
    """A moto S3 server on a free local port, with one bucket, reachable as ``aws_default``."""

    bucket = "landing"

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=self.bucket)

    @property
    def connection(self) -> dict[str, Any]:
        """The Airflow connection (``AIRFLOW_CONN_*`` JSON form) that reaches this server."""
        return {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A real S3 API (moto in server mode) for the test; ``aws_default`` points at it."""
    import json

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        import requests

        # moto keeps its state per process, not per server: start every test from nothing.
        requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=30).raise_for_status()
        s3 = S3Server(f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(s3.connection))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield s3
    finally:
        server.stop()
