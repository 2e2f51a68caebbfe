"""The images cannot be built here (no Docker): check that what they install agrees with the lockfile.

- the Airflow image's base tag is the Airflow version pinned in pyproject.toml and uv.lock,
  on Python 3.11, with Java 17 for Spark, and it installs uv.lock's export hash-checked;
- the serving image installs the lock's ``serving`` group; an environment built exactly
  that way (``uv sync --only-group serving`` + sluice without dependencies) serves a
  registered model with ``sluice serve``;
- both images run as the UIDs the pod security contexts name;
- the Airflow image carries the S3A jars (pinned pom and checksums of ``sluice.services.spark_jars``)
  where sluice looks for them, and its build stage's commands give a folder sluice accepts.
"""

from __future__ import annotations

import inspect
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


def s3a_recipe(pom_dir: Path, dest: Path, scratch: Path) -> str:
    """The Dockerfile's S3A build stage as a shell script, with its container paths moved to folders here."""
    match = re.search(r"^RUN (mvn .*?\.fetched)$", AIRFLOW_FILE, re.M | re.S)
    assert match, "the s3a-jars stage fetches with mvn and writes the stamp"
    script = match.group(1).replace("\\\n", " ")
    return script.replace("/s3a/", f"{pom_dir}/").replace("/jars", str(dest)).replace("/tmp/pinned", str(scratch))


def test_the_image_carries_the_s3a_jars_where_sluice_looks_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.services import spark_jars

    monkeypatch.delenv("SLUICE_S3A_JARS", raising=False)
    # the stage copies the pom and checksum list sluice pins, and runs Maven as `sluice fetch-jars` does
    assert f"COPY {spark_jars.POM.parent.relative_to(REPO)}/ /s3a/" in AIRFLOW_FILE
    assert spark_jars.CHECKSUMS.parent == spark_jars.POM.parent
    fetch = inspect.getsource(spark_jars.fetch_s3a_jars)
    assert "dependency:copy-dependencies" in fetch and "-Ds3a.dest=" in fetch
    assert "dependency:copy-dependencies -Ds3a.dest=/jars" in AIRFLOW_FILE
    # the verified folder lands at the default jars folder of the image's project, with its stamp
    project = re.search(r"^ENV SLUICE_PROJECT_DIR=(\S+)$", AIRFLOW_FILE, re.M)
    assert project
    dest = spark_jars.default_jars_dir(Path(project.group(1)))
    assert f"COPY --from=s3a-jars --chown=airflow:0 /jars {dest}" in AIRFLOW_FILE
    assert f"cp /s3a/{spark_jars.CHECKSUMS.name} /jars/{spark_jars.STAMP}" in AIRFLOW_FILE


@pytest.mark.integration
def test_the_image_s3a_recipe_gives_a_folder_sluice_accepts_and_refuses_a_corrupt_jar(tmp_path: Path) -> None:
    """The build stage's commands, run here with Maven: sluice takes the result; a changed jar fails the check."""
    from sluice.services import spark_jars

    if shutil.which("mvn") is None:
        pytest.skip("Maven is not installed (`apt-get install maven`)")
    dest = tmp_path / "jars"
    script = s3a_recipe(spark_jars.POM.parent, dest, tmp_path / "pinned")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    jars = spark_jars.s3a_jars(dest)
    assert [j.name for j in spark_jars.verify_jars(dest)] == [j.name for j in jars]
    assert len(jars) == len(spark_jars.expected_checksums())
    # the same check on a folder whose jar changed: the build stops
    with jars[0].open("ab") as f:
        f.write(b"tampered")
    check = script[script.index("&& grep") + 3 :].split("&& test")[0]
    done = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and f"{jars[0].name}: FAILED" in done.stdout + done.stderr
