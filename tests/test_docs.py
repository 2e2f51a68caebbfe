"""The docs stay true: generated blocks are current, the README is a front page, the tutorial works."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, fresh_mlflow_store, load_script

README = (REPO / "README.md").read_text()
DOCS = REPO / "docs"
TUTORIAL = (DOCS / "tutorial.md").read_text()


def tutorial_files() -> dict[str, str]:
    """``{path: content}`` of every ``<!-- file: path -->`` block of the tutorial page."""
    pattern = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)
    return {m["path"]: m["body"] for m in pattern.finditer(TUTORIAL)}


def tutorial_project(root: Path) -> Path:
    for path, body in tutorial_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body)
    (root / "pyproject.toml").write_text("[project]\nname = 'tutorial'\n")
    return root


def _docs_blocks() -> Any:
    return load_script(REPO / "tools" / "docs_blocks.py")


def test_the_generated_blocks_of_the_docs_are_current() -> None:
    """Spec reference, ports and settings tables are what the code gives (``make docs-generate`` rewrites them)."""
    assert _docs_blocks().stale() == [], "run: make docs-generate"


def test_the_spec_reference_page_is_generated_from_the_models() -> None:
    from sluice.spec.reference import markdown_reference

    block = _docs_blocks().block("spec-reference.md", "spec-reference")
    assert block.strip() == markdown_reference().strip()
    assert "### Training" in block and "| `sample` |" in block


def test_readme_is_a_front_page_with_the_two_make_commands() -> None:
    quick = README[README.index("## Quick start") : README.index("## Documentation")]
    assert "make demo" in quick and "make test" in quick
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert len(README.splitlines()) <= 200


def test_every_docs_page_is_in_the_site_and_every_readme_link_exists() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    in_nav = {page for item in config["nav"] for page in item.values()}
    assert in_nav == {p.name for p in DOCS.glob("*.md")}
    for target in re.findall(r"\]\((docs/[^)#]+|CONTRIBUTING\.md)", README):
        assert (REPO / target).is_file(), target


def test_tutorial_spec_lints_and_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from sluice.cli import main

    root = tutorial_project(tmp_path)
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(root))
    assert set(tutorial_files()) == {"include/features/departures.py", "dags/departure_delay.pipeline.yaml"}
    assert main(["lint", str(root / "dags")]) == 0
    assert main(["plan", str(root / "dags" / "departure_delay.pipeline.yaml")]) == 0
    out = capsys.readouterr().out
    assert "departure_delay__ingest" in out and "departure_delay__train" in out


@pytest.mark.integration
def test_tutorial_pipeline_builds_features_and_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store_template: Path
) -> None:
    from demo.producer import month_frame
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.evaluate import evaluate_candidate
    from sluice.steps.features import build_features
    from sluice.steps.ingest import land_new_files
    from sluice.steps.train import train_candidate
    from sluice.steps.validate import validate_batch

    root = tutorial_project(tmp_path)
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow_store(mlflow_store_template, root))
    loaded = load_spec(root / "dags" / "departure_delay.pipeline.yaml")
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), "departure_delay")
    landing = loaded.resolve(loaded.spec.source.uri)
    landing.mkdir(parents=True)
    month_frame(1, sample=2000).to_parquet(landing / "m1.parquet")
    (batch,) = land_new_files(str(landing / "*.parquet"), store, "tutorial").new
    assert validate_batch(store, batch, loaded.spec.validation, "parquet").status == "accepted"
    features = build_features(loaded, store)
    assert features.rows > 1500
    trained = train_candidate(loaded, store, features, "departure_delay__train", "tutorial-run")
    decision = evaluate_candidate(loaded, store, trained, "tutorial-run")
    assert decision.verdict == "pass", decision.reason
    shutil.rmtree(root / "data", ignore_errors=True)


def _compose_variables() -> dict[str, set[str]]:
    """Every environment variable ``docker/compose.yaml`` sets -> the services that set it."""
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    found: dict[str, set[str]] = {}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        names = [item.split("=", 1)[0] for item in env] if isinstance(env, list) else list(env)
        for variable in names:
            found.setdefault(variable, set()).add(name)
    return found


def test_every_variable_the_compose_file_sets_is_in_the_operations_table() -> None:
    page = (DOCS / "operations.md").read_text()
    section = page[page.index("### Every variable the compose file sets") :]
    section = section[: section.index("\n### ", 1)]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    variables = _compose_variables()
    assert len(variables) > 40, "the compose file was read"
    missing = sorted(set(variables) - listed)
    assert not missing, f"docker/compose.yaml sets {missing}: add a row to operations.md's table of them"
    assert not listed - set(variables), "the table lists only what compose sets"
