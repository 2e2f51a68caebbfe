"""A second sluice instance on the same machine never stops, or shares a port with, the first's model server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Project, free_port

from sluice.services import processes
from sluice.services.storage import open_store
from sluice.spec.loader import load_spec
from sluice.steps.deploy import DeployFailed, deploy_local, local_serving, stop_local


@pytest.fixture()
def neighbour(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Another project's model server, as the process table shows one (`sluice.cli serve ...`)."""
    other = tmp_path / "other-project"
    other.mkdir()
    port = free_port()
    cmd = [sys.executable, "-c", "import time; time.sleep(300)", "sluice.cli", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--pipeline", "flights_delay", "--version", "7"]
    proc = subprocess.Popen(cmd, cwd=other, start_new_session=True)
    yield proc, port
    processes.stop_group(proc.pid, grace_seconds=2)


def test_a_deploy_refuses_a_port_another_project_serves_and_stops_nothing(
    project: Project, neighbour: tuple[subprocess.Popen[bytes], int]
) -> None:
    proc, port = neighbour
    loaded = load_spec(project.write_spec(deployment={"target": "local", "local": {"port": port}}))
    store = open_store(loaded)

    with pytest.raises(DeployFailed, match=rf"port {port} on 127.0.0.1 is served by another sluice project") as err:
        deploy_local(loaded, store, "1", [{"x": 1}])
    assert "give this pipeline its own deployment.local.port" in str(err.value)
    assert "other-project" in str(err.value)
    assert proc.poll() is None, "the neighbour's server was stopped"

    # `sluice stop` in this project leaves it alone too; status names it as another project's.
    assert stop_local(store, "127.0.0.1", port, loaded.project_dir) == []
    assert proc.poll() is None
    lines = local_serving(store, "127.0.0.1", port, loaded.project_dir).describe()
    assert any(f"pid {proc.pid} serves v7" in line and "another project's" in line for line in lines), lines
