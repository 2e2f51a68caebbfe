"""A deploy target with its own step kind, and an expectation type, from a separate package.

The package is written into a temporary folder with its ``*.dist-info`` (``METADATA`` and
``entry_points.txt``), the way an installer leaves it; putting the folder on ``PYTHONPATH``
is its installation, and nothing is left behind. No sluice file is touched: the test
measures that too. The real ``sluice`` command line then lints, plans, shows and checks a
spec that uses them, and the DAGs are rendered with the package's own operator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO, demo_spec_dict

from sluice.plan.model import PlanError, Step, config_type, make_config
from sluice.spec import plugins
from sluice.spec.plugins import DEPLOY_TARGETS_GROUP, PluginError

DECLARATION = '''
"""A fictional deploy target: models served from a floppy disk (what the spec and the plan see)."""

from typing import Literal

from pydantic import Field

from sluice.spec.base import StrictModel
from sluice.spec.targets import DeployStep, TargetSpec


class FloppySettings(StrictModel):
    """Where the disk is."""

    drive: str = Field("A:", description="Drive letter.")
    density: Literal["DD", "HD"] = Field("HD", description="Disk density.")


class FloppyTargetSpec(TargetSpec[FloppySettings]):
    def deploy_step(self, pipeline: str, settings: FloppySettings) -> DeployStep:
        return DeployStep(
            kind="deploy_floppy",
            doc=f"Write {pipeline} to drive {settings.drive} ({settings.density}).",
            retries=0,
            timeout_minutes=5,
            config={"drive": settings.drive, "density": settings.density},
        )


FLOPPY = FloppyTargetSpec("floppy", "models served from a floppy disk", FloppySettings, "floppy_sluice.runtime:Floppy")
'''

RUNTIME = '''
"""The floppy target at run time."""

from typing import Any

from sluice.spec.models.deployment import Deployment
from sluice.steps.targets import Served, TargetBase

from floppy_sluice import FLOPPY


class Floppy(TargetBase):
    name = "floppy"

    def __init__(self, loaded: Any, store: Any, connect: Any = None) -> None:
        self.pipeline = loaded.spec.pipeline
        self.cfg = FLOPPY.of(loaded.spec.deployment)

    def describe(self) -> list[str]:
        return [f"target floppy: {self.pipeline} on drive {self.cfg.drive}"]

    def served(self, probe: bool = True) -> Served:
        return Served(self.name, "7", "a:/model", True, lines=("deployed: v7 on drive A: (disk spinning)",))

    def deploy(self, version: str, *, previous: Any, run_id: str, smoke_rows: Any) -> Any:
        raise NotImplementedError

    def stop(self) -> list[str]:
        return ["ejected"]
'''

KIND = '''
"""The floppy target's own step kind, as the plan checks it (no Airflow here)."""

from dataclasses import dataclass

from sluice.plan.model import StepKind


@dataclass(frozen=True)
class FloppyDeployConfig:
    drive: str
    density: str

    def __post_init__(self) -> None:
        if self.density not in ("DD", "HD"):
            raise ValueError(f"density {self.density!r} is not DD or HD")


DEPLOY_FLOPPY = StepKind("deploy_floppy", FloppyDeployConfig, "floppy_sluice.render:deploy_floppy")
'''

RENDER = '''
"""The deploy_floppy step as an Airflow task (imported only when a DAG is rendered)."""

from typing import Any

from airflow.sdk import BaseOperator

from sluice.airflow.render import operator_kwargs
from sluice.plan.model import PipelinePlan, Step

from floppy_sluice.kind import FloppyDeployConfig


class FloppyDeployOperator(BaseOperator):
    def __init__(self, *, drive: str, density: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drive = drive
        self.density = density

    def execute(self, context: Any) -> str:
        return f"written to {self.drive}"


def deploy_floppy(step: Step, plan: PipelinePlan) -> BaseOperator:
    assert isinstance(step.config, FloppyDeployConfig)
    return FloppyDeployOperator(drive=step.config.drive, density=step.config.density, **operator_kwargs(step, plan))
'''

CHECKS = '''
"""A fictional expectation type."""

from typing import Any, ClassVar, Literal

from pydantic import Field

from sluice.spec.expectations import ColumnExpectation


class Unique(ColumnExpectation):
    """Column values must be unique (row-level)."""

    gx_name: ClassVar[str] = "ExpectColumnValuesToBeUnique"
    row_level: ClassVar[bool] = True
    type: Literal["unique"] = Field(description="Expectation type.")

    def gx_kwargs(self) -> dict[str, Any]:
        return {"column": self.column}
'''

ENTRY_POINTS = """
[sluice.deploy_targets]
floppy = floppy_sluice:FLOPPY

[sluice.expectations]
unique = floppy_sluice.checks:Unique

[sluice.step_kinds]
deploy_floppy = floppy_sluice.kind:DEPLOY_FLOPPY
"""

#: One process runs every command (a start costs seconds here); each answer is kept as-is.
PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from sluice.cli import main

    def render(spec):
        # The DAG file's path: spec -> plan -> DAGs; what each task became, and whether the
        # package's renderer module was imported before rendering (it must not be).
        from sluice.airflow.render import render_pipeline
        from sluice.plan import build_plan
        from sluice.spec.loader import load_spec

        plan = build_plan(load_spec(spec))
        early = "floppy_sluice.render" in sys.modules
        tasks = {}
        for dag in render_pipeline(plan):
            for task in dag.tasks:
                tasks[f"{dag.dag_id}.{task.task_id}"] = {
                    "class": f"{type(task).__module__}.{type(task).__name__}",
                    "drive": getattr(task, "drive", None),
                    "retries": task.retries,
                    "upstream": sorted(task.upstream_task_ids),
                    "timeout": str(task.execution_timeout),
                }
        print(json.dumps({"renderer_imported_by_plan": early, "tasks": tasks}))
        return 0

    def load(folder):
        # What the DAG file registers for a folder of specs.
        from sluice.airflow.loader import build_all

        dags = build_all(folder)
        print(json.dumps({dag_id: dag.description for dag_id, dag in sorted(dags.items())}))
        return 0

    answers = {}
    for name, argv in json.loads(sys.argv[1]).items():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = render(argv[1]) if argv[0] == "@render" else load(argv[1]) if argv[0] == "@load" else main(argv)
        answers[name] = [code, out.getvalue(), err.getvalue()]
    print(json.dumps(answers))
    """
)


def _package(root: Path, entry_points: str = ENTRY_POINTS) -> Path:
    """The floppy-sluice package as an installer lays it out, in ``root``."""
    (root / "floppy_sluice").mkdir(parents=True)
    (root / "floppy_sluice" / "__init__.py").write_text(DECLARATION)
    (root / "floppy_sluice" / "runtime.py").write_text(RUNTIME)
    (root / "floppy_sluice" / "checks.py").write_text(CHECKS)
    (root / "floppy_sluice" / "kind.py").write_text(KIND)
    (root / "floppy_sluice" / "render.py").write_text(RENDER)
    info = root / "floppy_sluice-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: floppy-sluice\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


def _spec(folder: Path, name: str, deployment: dict[str, object], *, own_landing: bool = False) -> Path:
    data = demo_spec_dict()
    data["pipeline"] = name
    if own_landing:
        data["source"]["uri"] = f"data/landing/{name}"
    data["deployment"] = deployment
    data["validation"]["expectations"].append({"type": "unique", "column": "origin"})
    path = folder / f"{name}.pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _sluice(plugin: Path | None, commands: dict[str, list[str]]) -> dict[str, tuple[int, str, str]]:
    path = [str(plugin)] if plugin else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]),
        "SLUICE_PROJECT_DIR": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return {name: (code, out, err) for name, (code, out, err) in json.loads(run.stdout.splitlines()[-1]).items()}


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--", "include", "pyproject.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.process
def test_a_deploy_target_with_its_own_step_kind_and_an_expectation_type_from_another_package(
    tmp_path: Path,
) -> None:
    before = _git_status()
    plugin = _package(tmp_path / "site")
    specs = tmp_path / "specs"
    specs.mkdir()
    good = _spec(specs, "flights_delay", {"target": "floppy", "floppy": {"drive": "B:"}})
    extra = _spec(specs, "extra", {"target": "floppy", "floppy": {"drive": "B:", "sides": 2}})
    misspelt = _spec(specs, "misspelt", {"target": "flopy"})

    seen = _sluice(
        plugin,
        {
            "lint": ["lint", "--no-import", str(good)],
            "plan": ["plan", "--json", str(good)],
            "describe": ["plan", str(good)],
            "status": ["status", str(good)],
            "extra": ["lint", "--no-import", str(extra)],
            "misspelt": ["lint", "--no-import", str(misspelt)],
            "schema": ["schema"],
            "render": ["@render", str(good)],
        },
    )

    # The spec with the package's target, its settings block and its check lints clean.
    assert seen["lint"][0] == 0, seen["lint"]
    # The plan's train DAG gets the target's deploy step, of the package's own kind with its
    # typed config; plan and status ask its run-time class.
    train = next(d for d in json.loads(seen["plan"][1])["dags"] if d["dag_id"] == "flights_delay__train")
    deploy = next(s for s in train["steps"] if s["task_id"] == "deploy")
    assert (deploy["kind"], deploy["doc"]) == ("deploy_floppy", "Write flights_delay to drive B: (HD).")
    assert deploy["config"] == {"drive": "B:", "density": "HD"}
    # The DAG file renders that step with the package's operator, which gets sluice's task
    # settings (the target's retries and time limit, its place after promote); the
    # package's renderer module is imported only by rendering.
    rendered = json.loads(seen["render"][1])
    assert rendered["renderer_imported_by_plan"] is False
    task = rendered["tasks"]["flights_delay__train.deploy"]
    assert task["class"] == "floppy_sluice.render.FloppyDeployOperator" and task["drive"] == "B:", task
    assert (task["retries"], task["upstream"], task["timeout"]) == (0, ["promote"], "0:05:00"), task
    assert rendered["tasks"]["flights_delay__train.train"]["class"].endswith(".PythonOperator")
    assert "    target floppy: flights_delay on drive B:" in seen["describe"][1]
    assert "  deployed: v7 on drive A: (disk spinning)" in seen["status"][1]
    # An unknown setting in the target's block is a spec error at its line, with the fix.
    code, _, err = seen["extra"]
    line = next(i for i, text in enumerate(extra.read_text().splitlines(), 1) if text.strip().startswith("sides:"))
    assert code == 1 and f"extra.pipeline.yaml:{line}" in err and "deployment.floppy.sides" in err, err
    # A misspelt target lists the package's among the choices.
    code, _, err = seen["misspelt"]
    assert code == 1 and "no deploy target 'flopy'" in err, err
    assert "use one of the registered targets: 'local', 'kubernetes', 'floppy'" in err
    # Editors see both through the JSON Schema.
    schema = seen["schema"][1]
    assert '"floppy"' in schema and '"unique"' in schema and "Drive letter." in schema

    # Without the package the same spec is an error naming only sluice's own targets.
    (code, _, err) = _sluice(None, {"lint": ["lint", "--no-import", str(good)]})["lint"]
    assert (
        code == 1
        and "no deploy target 'floppy' (hint: use one of the registered targets: 'local', 'kubernetes')" in err
    ), err
    # A package whose target asks for a step kind it does not declare: lint and plan refuse
    # the spec at its deployment.target line, listing the kinds there are.
    forgot = _package(tmp_path / "forgot", ENTRY_POINTS.split("[sluice.step_kinds]")[0])
    seen = _sluice(forgot, {"lint": ["lint", "--no-import", str(good)], "plan": ["plan", str(good)]})
    line = next(i for i, text in enumerate(good.read_text().splitlines(), 1) if text.strip() == "target: floppy")
    for code, _, err in seen.values():
        assert code == 1 and f"flights_delay.pipeline.yaml:{line}:" in err, err
        assert (
            "deploy target 'floppy' asks for a deploy step that cannot be built: 'deploy_floppy' is not a step kind"
            in err
        )
        assert "deploy_kubernetes" in err and "sluice.step_kinds" in err, err
    # A package whose step kinds fail to import: lint refuses only the spec whose target uses
    # one, at its deployment.target line, naming the package; a spec on sluice's own target
    # in the same run still lints clean (one broken package hides no other pipeline).
    badkind = _package(tmp_path / "badkind")
    (badkind / "floppy_sluice" / "kind.py").write_text("raise ImportError('no floppy controller')\n")
    local = _spec(specs, "local_only", {"target": "local"}, own_landing=True)
    (code, out, err) = _sluice(badkind, {"lint": ["lint", "--no-import", str(good), str(local)]})["lint"]
    assert code == 1 and f"flights_delay.pipeline.yaml:{line}:" in err, err
    assert "'deploy_floppy' of distribution floppy-sluice 1.0" in err and "no floppy controller" in err, err
    assert "fix or uninstall floppy-sluice" in err and "ok  " in out and "(local_only)" in out, out
    # A package whose renderer fails to import: in the DAG file its pipeline becomes the
    # placeholder DAG naming the package, and a pipeline on sluice's own kinds is registered.
    broken = _package(tmp_path / "broken")
    (broken / "floppy_sluice" / "render.py").write_text("raise ImportError('no drive in this machine')\n")
    folder = tmp_path / "dags"
    folder.mkdir()
    _spec(folder, "floppy_one", {"target": "floppy"}, own_landing=True)
    _spec(folder, "local_one", {"target": "local"}, own_landing=True)
    (code, out, _) = _sluice(broken, {"load": ["@load", str(folder)]})["load"]
    dags = json.loads(out.splitlines()[-1])
    assert {"local_one__ingest", "local_one__train", "floppy_one__spec_error"} <= set(dags), dags
    assert not any(d.startswith("floppy_one__") and not d.endswith("__spec_error") for d in dags), dags
    assert (
        "'deploy_floppy' of distribution floppy-sluice 1.0: its renderer 'floppy_sluice.render:deploy_floppy'"
        in (dags["floppy_one__spec_error"])
    )
    # And no sluice file was touched to add them.
    assert _git_status() == before


@pytest.fixture
def rescan() -> Iterator[None]:
    """Discovery starts over before and after the test (its package leaves ``sys.path`` after it)."""
    plugins.forget()
    yield None
    plugins.forget()
    for name in [m for m in sys.modules if m.split(".")[0] == "floppy_sluice"]:
        del sys.modules[name]


def test_a_package_step_kind_types_its_config_at_plan_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescan: None
) -> None:
    monkeypatch.syspath_prepend(str(_package(tmp_path / "site")))
    needs = config_type("deploy_floppy")
    assert needs is not None and needs.__name__ == "FloppyDeployConfig"
    assert make_config("deploy_floppy", {"drive": "A:", "density": "DD"}) == needs(drive="A:", density="DD")
    # A config the kind's type refuses is a plan error saying what is wrong.
    with pytest.raises(PlanError, match=r"needs a FloppyDeployConfig.*density 'ED' is not DD or HD"):
        make_config("deploy_floppy", {"drive": "A:", "density": "ED"})
    with pytest.raises(PlanError, match=r"needs a FloppyDeployConfig.*'sides'"):
        make_config("deploy_floppy", {"drive": "A:", "density": "HD", "sides": 2})
    with pytest.raises(PlanError, match="'deploy_floppy' needs FloppyDeployConfig, got None"):
        Step("deploy", "deploy_floppy")
    # An unknown kind lists sluice's kinds and the package's.
    with pytest.raises(
        PlanError, match=r"'deploy_flopy' is not a step kind \(known: .*deploy_kubernetes.*deploy_floppy\)"
    ):
        Step("deploy", "deploy_flopy")


def test_a_package_step_kind_whose_renderer_fails_to_import_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescan: None
) -> None:
    from sluice.airflow.render import renderer_of

    site = _package(tmp_path / "site")
    (site / "floppy_sluice" / "kind.py").write_text(KIND.replace("floppy_sluice.render:", "floppy_sluice.gone:"))
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError) as caught:
        renderer_of("deploy_floppy")
    message = str(caught.value)
    assert (
        "'deploy_floppy' of distribution floppy-sluice 1.0: its renderer 'floppy_sluice.gone:deploy_floppy'" in message
    )
    assert "ModuleNotFoundError" in message and "fix or uninstall floppy-sluice" in message


def test_a_package_step_kind_may_not_take_a_sluice_kind_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescan: None
) -> None:
    site = _package(tmp_path / "site", "[sluice.step_kinds]\ntrain = floppy_sluice.kind:TRAIN\n")
    (site / "floppy_sluice" / "kind.py").write_text(
        KIND + '\nTRAIN = StepKind("train", None, "floppy_sluice.render:x")\n'
    )
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(
        PluginError, match=r"'train' of distribution floppy-sluice 1\.0 is one of sluice's own step kinds"
    ):
        config_type("not_a_kind")


def test_a_package_whose_target_fails_to_load_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescan: None
) -> None:
    site = _package(tmp_path / "site", "[sluice.deploy_targets]\nfloppy = floppy_sluice.missing:FLOPPY\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError) as caught:
        plugins.discover(DEPLOY_TARGETS_GROUP)
    message = str(caught.value)
    assert "'floppy' of distribution floppy-sluice 1.0 (floppy_sluice.missing:FLOPPY) failed to load" in message
    assert "ModuleNotFoundError" in message and "fix or uninstall floppy-sluice" in message
