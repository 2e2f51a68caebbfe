"""``docker/compose.yaml`` (the production shape as containers) agrees with the code. No Docker here:
the file is parsed, interpolated as ``docker compose`` would, and checked against what reads it.

- every service the production harness starts (``include/demo/production_stack.py``) is there, with
  two Celery workers of distinct hostnames, and the settings the harness gives each component;
- every variable it sets is one the code reads: sluice's names from :class:`sluice.settings.Settings`
  and the port table, Airflow's from Airflow's own configuration, MLflow's from MLflow's;
- the connections are the ones sluice opens (``aws_default`` of an ``s3://`` storage root, and
  ``smtp_default`` of the alerts), and the aws connection, read by sluice's own code, reaches
  the compose S3 service with MinIO's keys;
- every command parses with the installed Airflow CLI / is an option of ``mlflow server``;
- the image is the pinned Airflow, PostgreSQL and Redis are the majors of the Debian packages
  the harness runs, and only the databases and the bucket have volumes.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from tests.conftest import REPO

from sluice.airflow.runtime.home import PORTS, embedded_env
from sluice.plan import SPARK_POOL
from sluice.production import commands
from sluice.settings import Settings, variable
from sluice.spec.models import Storage

COMPOSE_FILE = REPO / "docker" / "compose.yaml"
EXAMPLE_SECRETS = REPO / "docker" / "secrets.env.example"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

#: Values for the secrets compose requires (as a filled-in docker/.env would hold them).
SECRETS = {
    "POSTGRES_PASSWORD": "pg-superuser-secret",
    "AIRFLOW_DB_PASSWORD": "airflow-db-secret",
    "MLFLOW_DB_PASSWORD": "mlflow-db-secret",
    "AIRFLOW_JWT_SECRET": "jwt-secret",
    "AIRFLOW_API_SECRET_KEY": "api-secret",
    "AIRFLOW_FERNET_KEY": "fernet-key",
    "S3_ACCESS_KEY": "minio-root",
    "S3_SECRET_KEY": "minio-root-secret",
}

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

#: Settings the harness gives its Airflow only because every component shares one machine,
#: each with why compose has no such setting (containers have a hostname and ports of their own).
#: Variables of the Airflow image's entrypoint, not of Airflow or sluice.
IMAGE_VARIABLES = {"DUMB_INIT_SETSID"}

ONE_MACHINE_ONLY = {
    "SLUICE_CELERY_HOSTNAME": "read by the harness's hostname callable; a container's hostname is its own",
    "PYTHONPATH": "puts the checkout's sluice first (the image installs it)",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "the default (the container's hostname) tells the workers apart",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "each worker container has the default port to itself",
    "SPARK_LOCAL_IP": "the harness keeps Spark's driver on loopback; a container's address is reachable",
    "SLUICE_FAULT_ONCE": "the fault tests' hold points (tests/production/test_faults.py); never in a deployment",
    "SLUICE_FAULT_HOLD": "the fault tests' hold points (tests/production/test_faults.py); never in a deployment",
    "SLUICE_TEST_FAULTS": "the switch of the fault hooks (sluice.services.faults); never in a deployment",
}


PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's variable interpolation of one value: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``.

    Raises:
        KeyError: A required variable (``${X:?...}`` or ``${X}``) is not in ``values``.
    """

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        if op == ":-":
            return values.get(name) or arg
        if not values.get(name):
            raise KeyError(f"{name} is required: {arg}")
        return values[name]

    return "$".join(PATTERN.sub(one, part) for part in text.split("$$"))


def walk(node: Any, each: Callable[[str], Any]) -> Any:
    """``node`` with ``each`` applied to every string value (not to keys, as compose does)."""
    if isinstance(node, dict):
        return {k: walk(v, each) for k, v in node.items()}
    if isinstance(node, list):
        return [walk(v, each) for v in node]
    return each(node) if isinstance(node, str) else node


def load(values: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as ``docker compose config`` would see it with ``values`` in ``docker/.env``."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    data: dict[str, Any] = walk(raw, lambda text: interpolate(text, SECRETS if values is None else values))
    return data


COMPOSE = load()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def harness() -> ModuleType:
    """The production-shape harness the tests start (being moved out of ``tests/`` for the demo)."""
    for name in ("demo.production_stack", "tests.production.stack"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    raise AssertionError("no production-shape harness found")


STACK = harness()


def constants(func: Callable[..., Any]) -> list[str]:
    """Every string literal in ``func``'s source."""
    tree = ast.parse(inspect.getsource(func).lstrip())
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def dict_keys(func: Callable[..., Any]) -> set[str]:
    """Literal keys of the dict displays and keyword names of ``dict(...)``/``.update(...)`` calls in ``func``."""
    tree = ast.parse(inspect.getsource(func).lstrip())
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        elif isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Name) and node.func.id == "dict")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "update")
        ):
            keys |= {kw.arg for kw in node.keywords if kw.arg}
    return keys


def default(func: Callable[..., Any], parameter: str) -> Any:
    """The default value of ``parameter`` of ``func``."""
    return inspect.signature(func).parameters[parameter].default


def command(service: dict[str, Any]) -> list[str]:
    """A service's command as words (a ``bash -c`` script split by the shell's rules)."""
    cmd = service.get("command") or []
    words = shlex.split(cmd) if isinstance(cmd, str) else [str(w) for w in cmd]
    if words[:2] == ["bash", "-c"]:
        return shlex.split(words[2])
    return words


def airflow_services() -> dict[str, dict[str, Any]]:
    """Services that run Airflow (they have the CeleryExecutor setting)."""
    return {n: s for n, s in SERVICES.items() if "AIRFLOW__CORE__EXECUTOR" in (s.get("environment") or {})}


def airflow_commands() -> Iterator[tuple[str, list[str]]]:
    """``(service, airflow arguments)`` of every Airflow command compose runs."""
    for name, service in airflow_services().items():
        words = [str(w) for w in service["command"]]
        if words[:2] == ["bash", "-c"]:  # a script: each `airflow ...` between `&&`
            for part in words[2].split("&&"):
                args = shlex.split(part)
                assert args[0] == "airflow", f"{name}: {part}"
                yield name, args[1:]
        else:  # the image's entrypoint runs `airflow <command>`
            yield name, words


def celery_workers() -> dict[str, dict[str, Any]]:
    """The Celery worker services."""
    return {n: s for n, s in airflow_services().items() if command(s)[:2] == ["celery", "worker"]}


def conn_type(value: str) -> str:
    """The type of an ``AIRFLOW_CONN_*`` value: JSON's ``conn_type``, or a URI's scheme."""
    return str(json.loads(value)["conn_type"]) if value.lstrip().startswith("{") else value.split(":", 1)[0]


def flag(words: list[str], name: str) -> str:
    """The value after ``name`` in ``words``."""
    assert name in words, f"{name} missing from {words}"
    return words[words.index(name) + 1]


def test_every_part_the_harness_starts_is_a_service() -> None:
    runs = {n: command(s) for n, s in SERVICES.items()}
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert "minio/minio" in SERVICES["s3"]["image"] and runs["s3"][0] == "server"
    assert runs["mlflow"][:4] == ["python", "-m", "mlflow", "server"]
    # Spark: the harness's master and worker classes, the worker registered at the master.
    # (the harness's commands come from sluice.production.commands, shared with the production kit)
    spark_commands = (commands.spark_master_command, commands.spark_worker_command)
    spark_classes = [c for f in spark_commands for c in constants(f) if c.startswith("org.apache.spark.deploy.")]
    assert sorted(spark_classes) == ["org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker"]
    for cls in spark_classes:
        (service,) = [n for n, words in runs.items() if cls in words]
        assert "/bin/spark-class" in " ".join(runs[service])
    worker = next(words for words in runs.values() if spark_classes[1] in words)
    master = next(n for n, words in runs.items() if spark_classes[0] in words)
    assert worker[worker.index(spark_classes[1]) + 1] == f"spark://{master}:{flag(runs[master], '--port')}"
    # Airflow: every component the harness starts, and the migration before them.
    harness_airflow = constants(STACK.airflow_celery)
    ran = [args for _, args in airflow_commands()]
    for component in AIRFLOW_COMPONENTS:
        assert component in harness_airflow
        assert [component] in ran, f"no service runs `airflow {component}`"
    assert ["db", "migrate"] in ran
    for name, service in airflow_services().items():
        if name != "airflow-init":
            assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name


def test_two_celery_workers_with_distinct_hostnames() -> None:
    workers = celery_workers()
    assert len(workers) == len(default(STACK.airflow_celery, "workers")) == 2
    hostnames = [s["hostname"] for s in workers.values()]
    # a worker's hostname is its service name, so compose's DNS resolves it for the API server
    # (task logs) and the Spark executors (the driver runs in the task)
    assert hostnames == list(workers)
    celery_names = [flag(command(s), "--celery-hostname") for s in workers.values()]
    assert len(set(hostnames)) == len(set(celery_names)) == 2
    for service, host, name in zip(workers.values(), hostnames, celery_names, strict=True):
        # the harness's form, <worker>@<host>; the health check pings that very worker
        assert name.endswith(f"@{host}")
        assert f"-d {name}" in service["healthcheck"]["test"][1]
        # stopping a worker (draining it) signals the worker only: Celery's warm shutdown
        assert service["environment"]["DUMB_INIT_SETSID"] == "0"


def test_airflow_components_get_the_settings_the_harness_gives_them() -> None:
    # what airflow_celery sets, and what the stack adds for every component (once it has that step)
    setters = [STACK.airflow_celery, STACK.component_env, commands.celery_worker_env]
    harness_keys = {k for func in setters for k in dict_keys(func) if k.isupper()}
    source = inspect.getsource(STACK) + inspect.getsource(commands)
    for key in ONE_MACHINE_ONLY:
        assert key in source, f"the harness no longer sets {key}: drop it from ONE_MACHINE_ONLY"
    expected = harness_keys - set(ONE_MACHINE_ONLY)
    assert "AIRFLOW__CELERY__BROKER_URL" in expected and "AIRFLOW__CORE__FERNET_KEY" in expected
    services = airflow_services()
    assert len(services) == 1 + len(AIRFLOW_COMPONENTS) + 2  # init, components, two workers
    for name, service in services.items():
        env = service["environment"]
        missing = expected - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # The secrets every component must share are the same everywhere.
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({s["environment"][key] for s in services.values()}) == 1, key


def airflow_option(key: str) -> tuple[str, str]:
    section, option = key.removeprefix("AIRFLOW__").split("__", 1)
    return section.lower(), option.lower()


def test_every_airflow_setting_is_an_option_of_airflows_configuration() -> None:
    from airflow.configuration import conf

    described = conf.configuration_description  # core and the providers' sections (celery)
    unknown = []
    for name, service in airflow_services().items():
        for key in service["environment"]:
            if key.startswith("AIRFLOW__"):
                section, option = airflow_option(key)
                if option not in described.get(section, {}).get("options", {}):
                    unknown.append(f"{name}: {key}")
    assert not unknown, f"Airflow reads no such option: {unknown}"
    # The check itself sees a misspelt option.
    assert "broker_uri" not in described["celery"]["options"]


def test_every_sluice_and_mlflow_variable_is_one_the_code_reads() -> None:
    import mlflow.environment_variables as mlflow_env

    sluice_names = {variable(field) for field in Settings.model_fields} | set(PORTS)
    mlflow_names = {value.name for value in vars(mlflow_env).values() if isinstance(getattr(value, "name", None), str)}
    # What sluice's embedded Airflow environment sets for its components (telemetry switches).
    sluice_sets = set(embedded_env(Path("/opt/airflow"), {})) - set(PORTS)
    unknown = []
    for name, service in {**airflow_services(), "mlflow": SERVICES["mlflow"]}.items():
        for key in service["environment"]:
            if key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AWS_")):
                continue  # checked by the tests of Airflow's options and of the connections; boto3's own
            if key.startswith("SLUICE_") and key not in sluice_names:
                unknown.append(f"{name}: {key} (not a sluice setting)")
            elif key.startswith("MLFLOW_") and key not in sluice_names | mlflow_names:
                unknown.append(f"{name}: {key} (not an MLflow variable)")
            elif not key.startswith(("SLUICE_", "MLFLOW_")) and key not in sluice_sets | IMAGE_VARIABLES:
                unknown.append(f"{name}: {key} (nothing reads it)")
    assert not unknown, unknown
    env = SERVICES["airflow-worker-1"]["environment"]
    assert env[variable("project_dir")] == "/opt/airflow"  # where the image puts dags/ and include/
    assert env[variable("mlflow_tracking_uri")] == f"http://mlflow:{flag(command(SERVICES['mlflow']), '--port')}"


def test_connections_are_the_ones_sluice_opens() -> None:
    from sluice.airflow.render import SMTP_CONN_ID

    conn_ids = {Storage(root="s3://sluice/pipelines").aws_conn_id, SMTP_CONN_ID}
    # the id the production-shape demo's spec names (the harness gives it to every component)
    if hasattr(STACK, "S3_CONN_ID"):
        conn_ids.add(STACK.S3_CONN_ID)
    # Any spec in the repository with its state or landing zone in a bucket names its connection.
    for spec_file in [*REPO.glob("dags/*.pipeline.yaml"), *REPO.glob("include/demo/**/*.pipeline.yaml")]:
        spec = yaml.safe_load(spec_file.read_text())
        for section, key in (("storage", "root"), ("source", "uri")):
            part = spec.get(section) or {}
            if str(part.get(key, "")).startswith("s3://"):
                conn_ids.add(part.get("conn_id") or "aws_default")
    for name, service in airflow_services().items():
        set_here = {
            k.removeprefix("AIRFLOW_CONN_").lower() for k in service["environment"] if k.startswith("AIRFLOW_CONN_")
        }
        assert conn_ids <= set_here, name
        for extra in set_here - conn_ids:  # another name for the S3 server (checked below), nothing else
            assert conn_type(service["environment"][f"AIRFLOW_CONN_{extra.upper()}"]) == "aws", extra


def test_the_aws_connection_read_by_sluice_reaches_the_s3_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.airflow.runtime.connections import s3_filesystem_options
    from sluice.services.spark import s3a_conf

    env = SERVICES["airflow-worker-1"]["environment"]
    aws = [k for k, v in env.items() if k.startswith("AIRFLOW_CONN_") and conn_type(v) == "aws"]
    assert f"AIRFLOW_CONN_{Storage(root='s3://sluice/pipelines').aws_conn_id.upper()}" in aws
    for key in aws:
        monkeypatch.setenv(key, env[key])
    # every aws connection compose defines reaches the same server with the same keys
    all_options = [s3_filesystem_options(key.removeprefix("AIRFLOW_CONN_").lower()) for key in aws]
    options = all_options[0]
    assert all(o == options for o in all_options)
    s3 = SERVICES["s3"]
    assert options["key"] == s3["environment"]["MINIO_ROOT_USER"] == SECRETS["S3_ACCESS_KEY"]
    assert options["secret"] == s3["environment"]["MINIO_ROOT_PASSWORD"] == SECRETS["S3_SECRET_KEY"]
    assert options["client_kwargs"]["endpoint_url"] == "http://s3:9000"  # MinIO's S3 port, the service's name
    assert "9000:9000" in s3["ports"]
    # Spark reaches it the same way (S3A, path-style: a service name is no bucket DNS name).
    spark = s3a_conf(options)
    assert spark["spark.hadoop.fs.s3a.endpoint"] == "http://s3:9000"
    assert spark["spark.hadoop.fs.s3a.path.style.access"] == "true"
    # The MLflow server writes its artifacts to the same server, and the buckets exist.
    assert SERVICES["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:9000"
    buckets = SERVICES["s3-init"]["environment"]["S3_BUCKETS"].split(",")
    assert set(buckets) == set(default(STACK.s3, "buckets"))


def test_the_smtp_connection_is_an_smtp_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import BaseHook

    from sluice.airflow.render import SMTP_CONN_ID

    value = SERVICES["airflow-worker-1"]["environment"][f"AIRFLOW_CONN_{SMTP_CONN_ID.upper()}"]
    monkeypatch.setenv(f"AIRFLOW_CONN_{SMTP_CONN_ID.upper()}", value)
    conn = BaseHook.get_connection(SMTP_CONN_ID)
    assert (conn.conn_type, conn.host, conn.port) == ("smtp", "smtp.example.com", 25)
    assert conn.extra_dejson["from_email"] == "sluice@example.com"


def test_mlflow_server_runs_as_the_harness_runs_it() -> None:
    from mlflow.cli import server

    words = command(SERVICES["mlflow"])
    flags = {w for w in words if w.startswith("--")}
    harness_flags = {c for c in constants(commands.mlflow_command) if c.startswith("--")}
    assert harness_flags <= flags, f"missing {sorted(harness_flags - flags)}"
    assert {"--serve-artifacts", "--artifacts-destination", "--backend-store-uri"} <= harness_flags
    options = {opt for param in server.params for opt in param.opts}
    assert flags <= options, f"not options of `mlflow server`: {sorted(flags - options)}"
    assert flag(words, "--artifacts-destination") == "s3://mlflow/" and "s3://mlflow/" in constants(STACK.mlflow_server)
    store = flag(words, "--backend-store-uri")
    assert store.startswith("postgresql+psycopg2://mlflow:") and store.endswith("@postgres:5432/mlflow")
    assert "mlflow" in default(STACK.postgres, "databases")
    # The server's environment: the harness's names (artifact endpoint, keys, region, no job runner).
    server_env = SERVICES["mlflow"]["environment"]
    assert {k for k in dict_keys(commands.mlflow_env) if k.isupper()} <= set(server_env)
    assert server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    # MLflow 3 answers only Host headers it allows: the service name the clients use is one.
    allowed = flag(words, "--allowed-hosts").split(",")
    tracking = SERVICES["airflow-worker-1"]["environment"]["MLFLOW_TRACKING_URI"]
    assert tracking.removeprefix("http://") in allowed


def test_every_airflow_command_parses_with_the_airflow_cli() -> None:
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    commands = list(airflow_commands())
    assert len(commands) >= 8
    for service, args in commands:
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"{service}: `airflow {' '.join(args)}` is not an Airflow command")
    # the Celery app the workers' health check pings exists under that name
    probe = SERVICES["airflow-worker-1"]["healthcheck"]["test"][1]
    module, attr = flag(shlex.split(probe), "--app").rsplit(".", 1)
    assert hasattr(importlib.import_module(module), attr)


def test_init_creates_the_pool_the_feature_task_runs_in() -> None:
    pools = [args for _, args in airflow_commands() if args[:2] == ["pools", "set"]]
    assert [args[2] for args in pools] == [SPARK_POOL]
    assert int(pools[0][3]) >= 1


def test_the_image_is_the_pinned_airflow_built_from_the_project_dockerfile() -> None:
    pinned = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("apache-airflow=="))
    version = pinned.split("==")[1]
    for name in [*airflow_services(), "mlflow", "spark-master", "spark-worker", "s3-init"]:
        service = SERVICES[name]
        assert service["image"].rsplit(":", 1)[1] == version, name
        assert service["build"]["args"]["AIRFLOW_VERSION"] == version, name
        assert (COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
            REPO / "docker" / "Dockerfile.airflow"
        )
    dockerfile = (REPO / "docker" / "Dockerfile.airflow").read_text()
    # the plugin folder Airflow is pointed at is in the image (the reports page, task links)
    assert "COPY --chown=airflow:0 plugins /opt/airflow/plugins" in dockerfile
    env = SERVICES["airflow-apiserver"]["environment"]
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/airflow/plugins" and (REPO / "plugins").is_dir()
    # the S3A jars folder sluice is pointed at is where the image's build stage put them
    assert f"COPY --from=s3a-jars --chown=airflow:0 /jars {env[variable('s3a_jars')]}" in dockerfile


def debian_major(package: str) -> int:
    """The major version of ``package`` that ``apt-get install`` would give."""
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        pytest.skip("no apt-cache: not a Debian machine (the harness installs Debian's packages)")
    policy = subprocess.run([apt_cache, "policy", package], capture_output=True, text=True, check=True, timeout=60)
    found = re.search(r"Candidate: (?:\d+:)?(\d+)", policy.stdout)
    if found is None:
        pytest.skip(f"apt-cache knows no {package} (run apt-get update)")
    return int(found.group(1))


def harness_packages(func: Callable[..., Any]) -> list[str]:
    """The Debian packages ``func`` installs (its ``ensure_debian_packages`` call)."""
    tree = ast.parse(inspect.getsource(func).lstrip())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ensure_debian_packages":
            value = ast.literal_eval(node.args[1])
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError(f"{func.__name__} installs no Debian package")


def test_postgres_and_redis_are_the_majors_the_harness_runs() -> None:
    (postgres_pkg,) = harness_packages(STACK.postgres)
    (redis_pkg,) = harness_packages(STACK.redis)
    postgres_tag = SERVICES["postgres"]["image"].split(":", 1)[1]
    redis_tag = SERVICES["redis"]["image"].split(":", 1)[1]
    assert int(re.split(r"[.-]", postgres_tag)[0]) == debian_major(postgres_pkg)
    assert int(re.split(r"[.-]", redis_tag)[0]) == debian_major(redis_pkg)


def test_secrets_are_required_and_the_example_lists_each() -> None:
    required: set[str] = set()
    walk(
        yaml.safe_load(COMPOSE_FILE.read_text()),
        lambda text: required.update(m["name"] for m in PATTERN.finditer(text) if m["op"] == ":?"),
    )
    example = dict(
        line.split("=", 1) for line in EXAMPLE_SECRETS.read_text().splitlines() if line and not line.startswith("#")
    )
    assert required == set(example) == set(SECRETS)
    assert not any(example.values()), "the example holds no secret values"
    for name in sorted(required):
        with pytest.raises(KeyError, match=name):
            load({k: v for k, v in SECRETS.items() if k != name})
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "docker/.env" in ignored and "docker/.env" in (REPO / ".dockerignore").read_text().splitlines()


def test_only_the_databases_and_the_bucket_have_volumes() -> None:
    assert set(COMPOSE["volumes"]) == {"postgres-data", "s3-data"}
    mounts = {n: s["volumes"] for n, s in SERVICES.items() if s.get("volumes")}
    assert mounts == {"postgres": ["postgres-data:/var/lib/postgresql/data"], "s3": ["s3-data:/data"]}
    # the first start creates one role and database each for Airflow and MLflow
    databases = COMPOSE["configs"]["databases"]["content"]
    for db in default(STACK.postgres, "databases"):
        assert f"CREATE DATABASE {db} OWNER {db};" in databases
    assert f"PASSWORD '{SECRETS['AIRFLOW_DB_PASSWORD']}'" in databases


def test_every_long_running_service_has_a_healthcheck_and_waits_for_what_it_needs() -> None:
    one_shot = {n for n, s in SERVICES.items() if "restart" not in s and n.endswith("-init")}
    assert one_shot == {"s3-init", "airflow-init"}
    for name, service in SERVICES.items():
        if name not in one_shot:
            assert service["healthcheck"]["test"], name
    for name in celery_workers():
        needs = SERVICES[name]["depends_on"]
        assert needs["mlflow"] == needs["spark-master"] == {"condition": "service_healthy"}, name
    assert SERVICES["mlflow"]["depends_on"]["s3-init"] == {"condition": "service_completed_successfully"}
