"""`sluice doctor`: each broken part of the live setup is caught and named with its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.airflow.doctor import (
    Finding,
    check_connections,
    check_landing,
    check_mlflow,
    check_pools,
    check_smtp,
    check_spark,
    check_storage,
    check_workers,
    diagnose,
)
from sluice.spec.loader import LoadedSpec, load_spec
from tests.conftest import Project, demo_spec_dict, free_port
from tests.smtp_server import MailCatcher, smtp_conn


def loaded(project: Project, **overrides: object) -> LoadedSpec:
    return load_spec(project.write_spec(**overrides))


def only(found: list[Finding], check: str) -> Finding:
    (finding,) = [f for f in found if f.check == check]
    return finding


def test_a_connection_the_spec_names_but_airflow_lacks_is_named_with_the_command_that_adds_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = loaded(project, storage={"root": "s3://bucket/prefix", "conn_id": "team_bucket"})
    missing = only(check_connections(spec), "connection team_bucket")
    assert not missing.ok
    assert "airflow connections add team_bucket --conn-type aws" in missing.fix
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_BUCKET", json.dumps({"conn_type": "aws"}))
    assert only(check_connections(spec), "connection team_bucket").ok


@pytest.mark.integration
def test_a_missing_spark_pool_is_caught_before_build_features_waits_for_ever(
    project: Project, airflow_db: Path
) -> None:
    from airflow.models.pool import Pool

    spec = loaded(project)
    if Pool.get_pool("sluice_spark") is not None:
        Pool.delete_pool("sluice_spark")
    missing = only(check_pools(spec), "pool sluice_spark")
    assert not missing.ok and "airflow pools set sluice_spark" in missing.fix
    Pool.create_or_update_pool("sluice_spark", 1, "sluice Spark tasks", include_deferred=False)
    assert only(check_pools(spec), "pool sluice_spark").ok


def test_an_mlflow_server_that_does_not_answer_is_named(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = loaded(project)
    assert only(check_mlflow(spec), "MLflow").ok  # the project's prepared SQLite store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = only(check_mlflow(spec), "MLflow")
    assert not down.ok and "does not answer" in down.fix


def test_storage_that_cannot_be_written_is_named(project: Project, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("x")
    bad = only(check_storage(loaded(project, storage={"root": str(blocked)})), "storage")
    assert not bad.ok and bad.fix
    assert only(check_storage(loaded(project)), "storage").ok


@pytest.mark.integration
def test_an_s3_landing_zone_is_listed_with_its_connection_and_a_missing_bucket_is_named(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.object_store import s3_server_process

    source = {"uri": "s3://landing/flights", "pattern": "*.parquet", "conn_id": "landing"}
    assert check_landing(loaded(project)) == [], "a local landing folder needs no listing"
    with s3_server_process() as s3:
        s3.create_bucket("landing")
        s3.client().put_object(Bucket="landing", Key="flights/2013-01.parquet", Body=b"PAR1")
        monkeypatch.setenv("AIRFLOW_CONN_LANDING", s3.airflow_connection)
        ok = only(check_landing(loaded(project, source=source)), "landing zone")
        assert ok.ok and "s3://landing/flights" in ok.detail and "1 objects" in ok.detail

        missing = only(
            check_landing(loaded(project, source={**source, "uri": "s3://no-such-bucket/x"})), "landing zone"
        )
        assert not missing.ok and "NoSuchBucket" in missing.detail
        assert "bucket no-such-bucket exists" in missing.fix and "s3:ListBucket" in missing.fix


def test_a_spark_master_that_does_not_answer_and_missing_s3a_jars_are_named(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    features = dict(demo_spec_dict()["features"])
    port = free_port()
    spec = loaded(project, features=features | {"engine": "cluster", "master": f"spark://127.0.0.1:{port}"})
    master = only(check_spark(spec), "Spark master")
    assert not master.ok and f"127.0.0.1:{port}" in master.fix
    monkeypatch.setenv("SLUICE_S3A_JARS", str(tmp_path / "no-jars"))
    jars = only(check_spark(loaded(project, storage={"root": "s3://bucket/prefix"})), "S3A jars")
    assert not jars.ok and "make s3a-jars" in jars.fix
    duckdb = loaded(project, storage={"root": "s3://bucket/prefix"}, features=features | {"engine": "duckdb"})
    assert check_spark(duckdb) == [], "features.engine: duckdb reads S3 through the store: no S3A jars needed"


def test_without_celery_there_are_no_workers_to_ask(project: Project) -> None:
    (executor,) = check_workers(loaded(project))
    assert executor.ok and "no workers to ask" in executor.detail


def test_an_smtp_server_that_does_not_answer_is_named(
    project: Project, monkeypatch: pytest.MonkeyPatch, smtp_server: MailCatcher
) -> None:
    spec = loaded(project)
    assert only(check_smtp(spec), "SMTP").ok
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(port))
    down = only(check_smtp(spec), "SMTP")
    assert not down.ok and f"127.0.0.1:{port}" in down.fix


def test_a_check_that_breaks_is_a_finding_not_a_traceback(project: Project) -> None:
    def check_broken(_: LoadedSpec) -> list[Finding]:
        raise RuntimeError("boom")

    (finding,) = diagnose(loaded(project), (check_broken,))
    assert finding.check == "broken" and not finding.ok and "boom" in finding.detail


def test_sluice_doctor_checks_every_spec_of_a_folder_and_a_broken_one_hides_none(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.cli import main

    project.write_spec("good_one")
    broken = project.dags / "broken.pipeline.yaml"
    broken.write_text("pipeline: broken\nsource: [\n")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(free_port()))  # nobody listens there
    code = main(["doctor", str(project.dags)])
    out, err = capsys.readouterr()
    assert code == 2  # a check failed (SMTP); the broken spec is reported too
    assert "good_one (" in out and "FAIL SMTP" in out and "fix: start the SMTP server" in out
    assert "broken.pipeline.yaml:" in err


@pytest.mark.integration
def test_sluice_status_flags_a_task_that_waits_on_a_missing_pool(
    project: Project, airflow_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.models.pool import Pool

    from sluice.cli import main

    spec = project.write_spec()
    if Pool.get_pool("sluice_spark") is not None:
        Pool.delete_pool("sluice_spark")
    main(["status", str(spec)])
    assert "WAITING FOR EVER: pool sluice_spark is missing" in capsys.readouterr().out
    Pool.create_or_update_pool("sluice_spark", 1, "sluice Spark tasks", include_deferred=False)
    main(["status", str(spec)])
    assert "WAITING FOR EVER" not in capsys.readouterr().out
