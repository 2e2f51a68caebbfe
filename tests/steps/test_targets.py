"""Deploy targets: a new one is one class registered in one place; ``status`` and ``plan`` use it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import DEMO_SPEC, REPO, demo_spec_dict, free_port
from tests.kube import dead_kubeconfig, kubernetes_spec

from sluice.cli import main
from sluice.services.storage import open_store
from sluice.spec.loader import LoadedSpec, load_spec
from sluice.steps import targets
from sluice.steps.targets import Served, target_for


class FloppyTarget:
    """A fictional target: models served from a floppy disk."""

    name = "floppy"

    def __init__(self, loaded: LoadedSpec, store: object) -> None:
        self.pipeline = loaded.spec.pipeline

    def describe(self) -> list[str]:
        return [f"target floppy: {self.pipeline} on drive A:"]

    def served(self, probe: bool = True) -> Served:
        return Served(self.name, "7", "a:/model", True, lines=("deployed: v7 on drive A: (disk spinning)",))

    def deploy(self, version: str, *, previous: str | None, run_id: str, smoke_rows: list[dict[str, Any]]) -> Any:
        return {"version": version}

    def stop(self) -> list[str]:
        return ["ejected"]


@pytest.fixture()
def floppy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the fictional target (the one place) and make the demo spec name it."""
    monkeypatch.setitem(targets.TARGETS, "floppy", FloppyTarget)
    real = targets.target_for

    def named_floppy(loaded: LoadedSpec, store: object) -> targets.DeployTarget:
        # The spec's Literal knows only the shipped targets: a copy names the new one.
        deployment = loaded.spec.deployment.model_copy(update={"target": "floppy"})
        spec = loaded.spec.model_copy(update={"deployment": deployment})
        return real(dataclasses.replace(loaded, spec=spec), store)  # type: ignore[arg-type]

    monkeypatch.setattr(targets, "target_for", named_floppy)


def test_a_registered_target_answers_status_and_plan(floppy: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(DEMO_SPEC)]) == 0
    assert "  deployed: v7 on drive A: (disk spinning)" in capsys.readouterr().out

    assert main(["plan", str(DEMO_SPEC)]) == 0
    out = capsys.readouterr().out
    assert "  deployment\n    target floppy: flights_delay on drive A:" in out


def test_plan_describes_the_local_target_and_an_unknown_target_names_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", str(DEMO_SPEC)]) == 0
    assert "    target local: a `sluice serve` process on http://" in capsys.readouterr().out

    loaded = load_spec(DEMO_SPEC)
    spec = loaded.spec.model_copy(update={"deployment": loaded.spec.deployment.model_copy(update={"target": "floppy"})})
    with pytest.raises(KeyError, match="no deploy target 'floppy' \\(known: kubernetes, local\\)"):
        target_for(dataclasses.replace(loaded, spec=spec), open_store(loaded))


# --------------------------------------------------------------------------- sluice stop asks the target


def test_stop_goes_through_the_target(floppy: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stop", str(DEMO_SPEC)]) == 0
    assert capsys.readouterr().out == "ejected\n"


def test_stop_of_a_kubernetes_target_refuses_and_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    # Nothing may be asked of a cluster: a kubeconfig pointing nowhere proves no call is made.
    monkeypatch.setenv("KUBECONFIG", str(dead_kubeconfig(tmp_path)))
    spec = tmp_path / "flights_delay.pipeline.yaml"
    spec.write_text(yaml.safe_dump(kubernetes_spec(replicas=3), sort_keys=False))

    assert main(["stop", str(spec)]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert "sluice does not stop deployment ml-serving/flights-delay" in err
    assert "`kubectl -n ml-serving scale deployment/flights-delay --replicas=0`" in err
    assert "scales it back to 3" in err
    assert "Traceback" not in err


def test_stop_of_a_local_target_with_nothing_running_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    data = demo_spec_dict()
    data["storage"] = {"root": str(tmp_path / "store")}
    data["deployment"]["local"] = {**data["deployment"].get("local", {}), "port": free_port()}
    spec = tmp_path / "flights_delay.pipeline.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))

    assert main(["stop", str(spec)]) == 0
    port = data["deployment"]["local"]["port"]
    assert capsys.readouterr().out == f"no local model server running on 127.0.0.1:{port}\n"
