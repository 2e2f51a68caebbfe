"""The images cannot be built here (no Docker): check that what they install agrees with the lockfile.

- the Airflow image's base tag is the Airflow version pinned in pyproject.toml and uv.lock,
  on Python 3.11, with Java 17 for Spark, and it installs uv.lock's export hash-checked;
- the serving image installs the lock's ``serving`` group; an environment built exactly
  that way (``uv sync --only-group serving`` + sluice without dependencies) serves a
  registered model with ``sluice serve``;
- both images run as the UIDs the pod security contexts name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import REPO, fresh_mlflow_store

from sluice.services import kube_manifests as km

DOCKER = REPO / "docker"
AIRFLOW_FILE = (DOCKER / "Dockerfile.airflow").read_text()
SERVING_FILE = (DOCKER / "Dockerfile.serving").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = tomllib.loads((REPO / "uv.lock").read_text())


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(name: str) -> str:
    (version,) = [p["version"] for p in LOCK["package"] if norm(p["name"]) == norm(name)]
    return str(version)


def arg(dockerfile: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile, re.M)
    assert match, f"ARG {name} missing"
    return match.group(1)


def uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is installed by `make setup`"
    return found


def export(*args: str) -> dict[str, str]:
    """``uv export --frozen`` of the lockfile: {normalized name: version}."""
    out = subprocess.run(
        [uv(), "export", "--frozen", "--no-hashes", "--no-emit-project", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", out, re.M)
    return {norm(n): v for n, v in pins}


def test_airflow_base_image_is_the_pinned_airflow_on_python_311() -> None:
    pinned = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("apache-airflow=="))
    version = pinned.split("==")[1]
    assert version.startswith("3.3.")
    assert arg(AIRFLOW_FILE, "AIRFLOW_VERSION") == version == locked("apache-airflow")
    assert arg(AIRFLOW_FILE, "PYTHON_VERSION") == "3.11"
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in AIRFLOW_FILE
    assert PYPROJECT["project"]["requires-python"].startswith(">=3.11,<3.12")


def test_airflow_image_has_java_17_for_spark() -> None:
    assert "openjdk-17-jre-headless" in AIRFLOW_FILE
    assert "ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-${TARGETARCH}" in AIRFLOW_FILE
    assert int(locked("pyspark").split(".")[0]) >= 4, "Spark 4 needs Java 17"


def test_images_install_python_packages_from_the_lockfile_only() -> None:
    airflow_installs = [m.strip() for m in re.findall(r"^(?:RUN| &&) *((?:pip|uv)\b[^\n\\]*)", AIRFLOW_FILE, re.M)]
    assert airflow_installs == [
        "uv export --frozen --no-dev --no-emit-project --format requirements-txt -o /tmp/requirements.txt",
        "pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.txt",
        "pip install --no-cache-dir --no-deps /opt/sluice",
    ]
    serving_installs = [m.strip() for m in re.findall(r"^(?:RUN| &&) *((?:pip|uv)\b[^\n\\]*)", SERVING_FILE, re.M)]
    assert serving_installs == [
        "uv sync --frozen --only-group serving --no-install-project",
        "uv pip install --no-deps /opt/sluice",
    ]
    # both copy the lockfile the tests above read
    for dockerfile in (AIRFLOW_FILE, SERVING_FILE):
        assert re.search(r"^COPY .*pyproject.toml uv.lock", dockerfile, re.M)


def test_serving_group_has_no_airflow_spark_or_gx_and_matches_the_main_versions() -> None:
    serving = export("--only-group", "serving")
    runtime = export("--no-dev")
    for heavy in ("apache-airflow", "pyspark", "great-expectations", "evidently"):
        assert heavy not in serving
    for name, version in serving.items():
        assert runtime.get(name, version) == version, f"{name}: serving image and Airflow image differ"


@pytest.fixture(scope="module")
def serving_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv with exactly what Dockerfile.serving installs: the lock's serving group, then sluice."""
    venv = tmp_path_factory.mktemp("serving") / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    subprocess.run(
        [uv(), "sync", "--frozen", "--only-group", "serving", "--no-install-project"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    subprocess.run(
        [uv(), "pip", "install", "--python", str(venv / "bin" / "python"), "--no-deps", str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    yield venv
    shutil.rmtree(venv, ignore_errors=True)  # ~650 MB: not left for pytest's tmp retention


@pytest.mark.integration
def test_the_serving_install_serves_a_registered_model(
    serving_env: Path, tmp_path: Path, mlflow_store_template: Path
) -> None:
    """``sluice serve`` from the serving-group install loads ``models:/name/1`` and answers predictions."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from tests.conftest import free_port

    from sluice.services import tracking
    from sluice.steps.deploy import http_json

    uri = fresh_mlflow_store(mlflow_store_template, tmp_path)
    client = tracking.configure_uri(uri)
    experiment = client.create_experiment("serving", artifact_location=(tmp_path / "artifacts").as_uri())
    x = pd.DataFrame({"distance": [100.0, 2000.0, 150.0, 2500.0], "dep_hour": [6.0, 20.0, 7.0, 21.0]})
    model = LogisticRegression().fit(x, [0, 1, 0, 1])
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(model, name="model", input_example=x.head(1), pip_requirements=[])
    mlflow.register_model(info.model_uri, "serving_check")

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            *(str(serving_env / "bin" / "sluice"), "serve", "--model-uri", "models:/serving_check/1"),
            *("--host", "127.0.0.1", "--port", str(port), "--ready-file", str(tmp_path / "ready")),
        ],
        env={"PATH": str(serving_env / "bin"), "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": uri},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(600):
            if (tmp_path / "ready").exists() or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert (tmp_path / "ready").exists(), (tmp_path / "serve.log").read_text()[-3000:]
        status, body = http_json(
            f"http://127.0.0.1:{port}/invocations", {"dataframe_records": x.to_dict(orient="records")}
        )
        assert status == 200 and len(body["predictions"]) == 4
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    imported = subprocess.run(
        [str(serving_env / "bin" / "python"), "-c", "import airflow"], capture_output=True, timeout=60
    )
    assert imported.returncode != 0, "the serving install has no Airflow"


def test_images_run_as_the_uids_the_pod_security_contexts_name() -> None:
    assert f"USER {km.DEPLOYER_UID}" in AIRFLOW_FILE
    assert f"useradd --uid {km.SERVING_UID}" in SERVING_FILE and f"USER {km.SERVING_UID}" in SERVING_FILE
    assert 'ENTRYPOINT ["sluice"]' in SERVING_FILE
