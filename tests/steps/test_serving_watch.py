"""What `sluice status` exits with, and what the serving watch does, when the local model server is wrong.

These use stand-in server processes (the process table is how servers are found); the real
server killed and restarted is ``tests/integration/test_serving_watch.py``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Project, free_port

from sluice.cli import STATUS_OK, STATUS_WRONG
from sluice.cli import main as sluice
from sluice.services import processes
from sluice.services.storage import open_store
from sluice.spec.loader import load_spec
from sluice.steps.deploy import CURRENT, servers_on, watch_local
from sluice.steps.records import LocalDeployment, ServingStatus, SmokeCheck, encode


def _stand_in(cwd: Path, port: int, version: str) -> subprocess.Popen[bytes]:
    """A process the process table shows as a model server (`sluice.cli serve ...`) that answers nothing."""
    cmd = [sys.executable, "-c", "import time; time.sleep(300)", "sluice.cli", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--pipeline", "flights_delay", "--version", version]
    return subprocess.Popen(cmd, cwd=cwd, start_new_session=True)


@pytest.fixture()
def spec(project: Project) -> Iterator[Path]:
    path = project.write_spec(deployment={"target": "local", "local": {"port": free_port()}})
    yield path
    loaded = load_spec(path)
    for server in servers_on("127.0.0.1", loaded.spec.deployment.local.port):
        processes.stop_group(server.pid, grace_seconds=2)


def _record(spec: Path, pid: int, version: str = "3", inputs: list[dict[str, object]] | None = None) -> None:
    loaded = load_spec(spec)
    cfg = loaded.spec.deployment.local
    record = LocalDeployment(
        pipeline="flights_delay",
        version=version,
        model_uri=f"models:/flights_delay/{version}",
        pid=pid,
        host=cfg.host,
        port=cfg.port,
        admin_port=free_port(),
        url=f"http://{cfg.host}:{cfg.port}/invocations",
        log="server.log",
        started_at=0.0,
        smoke=SmokeCheck(rows=1, predictions=[0], inputs=inputs or []),
    )
    store = open_store(loaded)
    store.json.write(store.keys.deploy(CURRENT), encode(record))


def test_status_exits_0_when_nothing_is_deployed_yet(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sluice(["status", str(spec)]) == STATUS_OK
    assert "deployed: nothing" in capsys.readouterr().out


def test_status_exits_3_when_the_recorded_server_is_gone_and_the_watch_cannot_restart_an_old_record(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _record(spec, dead.pid)

    assert sluice(["status", str(spec)]) == STATUS_WRONG == 3
    assert "NOT SERVING: the record says v3" in capsys.readouterr().out

    # A record written before the watch has no smoke rows: the watch says so and restarts nothing.
    check = watch_local(load_spec(spec), open_store(load_spec(spec)))
    assert (check.status, check.version) == (ServingStatus.DOWN, "3")
    assert "NOT SERVING" in check.found[0] and "clear the train DAG's deploy task" in check.error


def test_status_exits_3_for_a_stray_server_and_the_watch_stops_it(
    spec: Path, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    port = load_spec(spec).spec.deployment.local.port
    stray = _stand_in(project.root, port, "2")
    try:
        assert sluice(["status", str(spec)]) == STATUS_WRONG
        assert f"unrecorded model server: pid {stray.pid} serves v2" in capsys.readouterr().out

        # No record, so nothing may serve: the stray is stopped, and said to be.
        stopped: list[str] = []
        check = watch_local(load_spec(spec), open_store(load_spec(spec)), say=stopped.append)
        assert check.status == ServingStatus.RESTARTED and check.version is None
        assert stopped == [f"stopped model server pid {stray.pid} (v2) on 127.0.0.1:{port}: no record owns it"]
        assert servers_on("127.0.0.1", port) == []
        assert sluice(["status", str(spec)]) == STATUS_OK
    finally:
        processes.stop_group(stray.pid, grace_seconds=2)
