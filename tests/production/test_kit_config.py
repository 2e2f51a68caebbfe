"""The production kit's environment file and its checks, without starting anything (fast tier).

What a team sees before the first ``up``: the file ``init`` writes, the errors a bad value
gives (file and line), the parts ``--only`` accepts, the refusal of a taken port, and the
"where to look" table. ``test_kit.py`` starts the real thing.
"""

from __future__ import annotations

import json
import re
import socket
import stat
from pathlib import Path

import pytest

from sluice.production.envfile import FILE_NAME, SECTIONS, Kit, KitError, init, load, port_variables
from sluice.production.parts import airflow_env, postgres_socket_dir, select, where_to_look
from sluice.production.supervise import up

PROJECT = Path(__file__).resolve().parents[2]


def new_kit(folder: Path, **settings: str) -> Path:
    return init(folder, PROJECT, settings)


def test_init_writes_every_variable_with_fresh_secrets_and_private_mode(tmp_path: Path) -> None:
    first, second = new_kit(tmp_path / "a"), new_kit(tmp_path / "b")
    assert first.name == FILE_NAME and stat.S_IMODE(first.stat().st_mode) == 0o600
    kit = load(first)
    for _, _, entries in SECTIONS:
        for entry in entries:
            assert entry.name in kit.values, f"{entry.name} missing from the template"
            assert f"# {entry.help}\n{entry.name}=" in first.read_text(), "each variable says what it is"
    for secret in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "SLUICE_KIT_ADMIN_PASSWORD"):
        assert kit.get(secret) != load(second).get(secret), f"{secret} is generated per kit"
    assert (tmp_path / "a" / "dags" / "load_pipelines.py").exists(), "specs dropped beside it become DAGs"
    with pytest.raises(KitError, match="exists already"):
        new_kit(tmp_path / "a")


def test_references_follow_the_ports_a_team_chooses(tmp_path: Path) -> None:
    kit = load(new_kit(tmp_path, SLUICE_KIT_POSTGRES_PORT="15432", AIRFLOW__CORE__PARALLELISM="8"))
    password = kit.get("SLUICE_KIT_AIRFLOW_DB_PASSWORD")
    conn = kit.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    assert conn == f"postgresql+psycopg2://airflow:{password}@127.0.0.1:15432/airflow"
    assert kit.get("AIRFLOW__CELERY__RESULT_BACKEND") == f"db+{conn}"
    env = airflow_env(kit)
    assert env["AIRFLOW__CORE__PARALLELISM"] == "8", "a setting of the file wins over the kit's defaults"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW_HOME"] == str(kit.state / "airflow")
    s3 = json.loads(env["AIRFLOW_CONN_SLUICE_S3"])
    assert s3["extra"]["endpoint_url"] == kit.get("SLUICE_KIT_S3_ENDPOINT") and s3["login"] == "sluice"


def test_real_aws_leaves_endpoint_and_keys_to_the_credential_chain(tmp_path: Path) -> None:
    kit = load(new_kit(tmp_path, SLUICE_KIT_S3_ENDPOINT="", SLUICE_KIT_S3_ACCESS_KEY="", SLUICE_KIT_S3_SECRET_KEY=""))
    conn = json.loads(airflow_env(kit)["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn == {"conn_type": "aws", "extra": {"region_name": "us-east-1"}}


def test_a_bad_value_is_reported_at_its_line(tmp_path: Path) -> None:
    path = new_kit(tmp_path, SLUICE_KIT_REDIS_PORT="six")
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("SLUICE_KIT_REDIS_PORT=")
    )
    with pytest.raises(KitError, match=re.escape(f"{path}:{line}: SLUICE_KIT_REDIS_PORT='six' is not a whole number")):
        load(path).port("SLUICE_KIT_REDIS_PORT")
    uneven = load(new_kit(tmp_path / "b", SLUICE_KIT_WORKER_LOG_PORTS="8793"))
    with pytest.raises(KitError, match="1 log port\\(s\\) for 2 worker\\(s\\)"):
        uneven.workers  # noqa: B018
    with pytest.raises(KitError, match="no such file: write one with `sluice production init"):
        load(tmp_path / "nowhere" / FILE_NAME)


def test_only_takes_part_names_and_groups(tmp_path: Path) -> None:
    kit = load(new_kit(tmp_path))
    assert select(kit, ["spark", "redis"]) == ["redis", "spark-master", "spark-worker"]
    assert select(kit, ["airflow-worker"]) == ["airflow-worker-w1", "airflow-worker-w2"]
    assert len(select(kit, None)) == 13, "SLUICE_KIT_PARTS: every part, both workers"
    with pytest.raises(KitError, match="--only: no part named 'airflow-webserver'; the parts: postgres, redis"):
        select(kit, ["airflow-webserver"])


def test_a_taken_port_stops_up_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        path = new_kit(tmp_path, SLUICE_KIT_REDIS_PORT=str(taken))
        with pytest.raises(KitError) as refused:
            up(load(path), ["postgres", "redis"], say=lambda line: None)
    message = str(refused.value)
    assert message.startswith("nothing started:")
    assert f"port {taken} (SLUICE_KIT_REDIS_PORT, part redis) is already in use" in message
    assert f"{path}:" in message, "the line to edit"
    assert not (tmp_path / "state" / "run").exists(), "no part was started"


def test_where_to_look_names_each_address_and_login(tmp_path: Path) -> None:
    kit = load(new_kit(tmp_path, SLUICE_KIT_AIRFLOW_PORT="18080", SLUICE_KIT_FLOWER_PORT="15555"))
    rows = {what: (where, login) for what, where, login in where_to_look(kit)}
    admin = f"admin / {kit.get('SLUICE_KIT_ADMIN_PASSWORD')}"
    assert rows["Airflow UI and REST API"] == ("http://127.0.0.1:18080", admin)
    assert rows["Flower (Celery)"] == ("http://127.0.0.1:15555", admin)
    assert kit.get("SLUICE_KIT_S3_SECRET_KEY") in rows["S3 endpoint"][1]
    assert rows["Spark master UI"][1] == "master spark://127.0.0.1:7077"
    assert port_variables()[0] == "SLUICE_KIT_POSTGRES_PORT" and "SLUICE_KIT_FLOWER_PORT" in port_variables()


def test_a_deep_state_folder_gets_a_short_postgres_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    kit = load(new_kit(deep))
    sock = postgres_socket_dir(kit)
    assert len(str(sock / ".s.PGSQL.65535")) <= 107
    assert postgres_socket_dir(kit) == sock, "the same folder every time (status and down find it)"
    shallow = Kit(Path("/srv/kit/production.env"), {"SLUICE_KIT_STATE": "/srv/kit/state"})
    assert postgres_socket_dir(shallow) == Path("/srv/kit/state/postgres/socket"), "beside the data when it fits"
