"""The local target starts the model server with the pipeline's storage and id column (its prediction log)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Project, demo_spec_dict

from sluice.services.storage import PipelineStore
from sluice.spec.loader import load_spec
from sluice.steps.deploy import _server_command, _store_env


def _arg(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_the_server_logs_to_the_specs_storage_root_with_its_id_column(project: Project) -> None:
    source = demo_spec_dict()["source"] | {"id_column": "flight"}
    loaded = load_spec(project.write_spec(source=source, storage={"root": "data/state"}))
    cmd = _server_command(loaded, "3", Path("ready"))
    assert _arg(cmd, "--storage-root") == str(project.root / "data" / "state"), "a relative root, made absolute"
    assert _arg(cmd, "--id-column") == "flight"
    assert _arg(cmd, "--pipeline") == "flights_delay" and _arg(cmd, "--version") == "3"


def test_without_an_id_column_none_is_passed(project: Project) -> None:
    cmd = _server_command(load_spec(project.write_spec()), "1", Path("ready"))
    assert "--id-column" not in cmd and "--storage-root" in cmd


def test_an_object_stores_keys_and_endpoint_reach_the_server_as_aws_variables() -> None:
    from sluice.services.storage import backend_for

    options = {"key": "AK", "secret": "SK", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "x"}}
    store = PipelineStore(None, "p", backend_for("s3://bucket/root", "p", options=options))
    assert _store_env(store) == {
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
        "AWS_DEFAULT_REGION": "x",
    }
    assert _store_env(PipelineStore("/tmp/x", "p")) == {}
