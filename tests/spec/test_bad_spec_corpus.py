"""The bad-spec corpus through every command that reads a spec.

Each broken spec (see ``tests/spec/corpus.py``) must end, for ``sluice lint``, ``plan``,
``plan --manifests``, ``status`` and ``stop``, in exit code 1 with ``file:line`` and a hint
on stderr and no traceback; a good spec linted beside it still reports ok.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.spec.corpus import DEMO_SPEC, PROJECT_DIR, BadSpec, bad_specs, clashing_specs

from sluice.cli import main

CASES = bad_specs()
CLASHES = clashing_specs()


@pytest.fixture(autouse=True)
def _project_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(PROJECT_DIR))


def assert_reported(case: BadSpec, path: Path, out: str, err: str) -> None:
    """file:line and a hint for every issue of ``path``; the expected words; no traceback."""
    assert "Traceback" not in out + err
    mine = [row for row in err.splitlines() if row.startswith(f"{path}:")]
    assert mine, f"no issue names {path}:\n{err}"
    for row in mine:
        assert re.match(rf"{re.escape(str(path))}:\d+(:\d+)?: ", row), row
        assert "(hint: " in row, f"no hint: {row}"
    if case.line is not None:
        assert any(row.startswith(f"{path}:{case.line}:") for row in mine), f"want line {case.line}:\n{err}"
    assert case.fragment in err, f"want {case.fragment!r}:\n{err}"


def test_the_corpus_is_large_and_covers_every_family() -> None:
    families = {c.name.split("__")[0] for c in CASES}
    assert {"misspelt", "dropped", "mistyped", "range0"} <= families
    assert len([c for c in CASES if c.name.startswith("yaml_")]) >= 30
    assert len(CASES) >= 300


#: Every case, the ``feature_`` ones marked ``process``: lint answers them by running the
#: feature job in a child process (the probe; its answer is cached in ``.sluice/lint-cache``,
#: so only a clean checkout shows the child).
PARAMS = [
    pytest.param(c, id=c.name, marks=[pytest.mark.process] if c.name.startswith("feature_") else []) for c in CASES
]


@pytest.mark.parametrize("case", PARAMS)
def test_bad_spec_through_lint_plan_status_and_stop(case: BadSpec, tmp_path: Path, capsys) -> None:
    path = case.write(tmp_path / "dags")

    assert main(["lint", str(DEMO_SPEC), str(path)]) == 1
    out, err = capsys.readouterr()
    assert_reported(case, path, out, err)
    assert f"ok  {DEMO_SPEC}  (flights_delay)" in out, "the good spec beside it must still be ok"

    assert main(["plan", str(path)]) == 1
    assert_reported(case, path, *capsys.readouterr())
    assert main(["plan", "--manifests", str(path)]) == 1
    assert_reported(case, path, *capsys.readouterr())

    if not case.needs_import:  # status and stop do not import the model class
        assert main(["status", str(path)]) == 1
        assert_reported(case, path, *capsys.readouterr())
        assert main(["stop", str(path)]) == 1
        assert_reported(case, path, *capsys.readouterr())


@pytest.mark.parametrize("clash", CLASHES, ids=[c.name for c in CLASHES])
def test_clashing_specs_are_all_rejected_by_folder_and_by_file(clash, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    paths = []
    for stem, text in clash.files.items():
        paths.append(folder / f"{stem}.pipeline.yaml")
        paths[-1].write_text(text)

    for argv in (["lint", str(folder), str(DEMO_SPEC)], ["lint", *map(str, paths), str(DEMO_SPEC)]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        for path in paths:
            case = BadSpec(path.stem, "", clash.fragment)
            assert_reported(case, path, out, err)
            assert not re.search(rf"ok .*{re.escape(path.name)}", out)
        assert f"ok  {DEMO_SPEC}  (flights_delay)" in out


def test_the_same_file_named_twice_is_one_spec(capsys) -> None:
    assert main(["lint", str(DEMO_SPEC), str(DEMO_SPEC.parent)]) == 0
    assert capsys.readouterr().out.count("ok ") == 1


SUBPROCESS_CASES = [
    "yaml_alias_bomb",
    "yaml_recursive_alias",
    "yaml_python_apply",
    "yaml_utf16",
    "yaml_latin1",
    "cron_bad_preset",
    "model_class_typo",
]


@pytest.mark.process
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_spec_through_the_real_command(name: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == name)
    path = case.write(tmp_path)
    env = {**os.environ, "SLUICE_PROJECT_DIR": str(PROJECT_DIR)}
    sluice = [sys.executable, "-m", "sluice.cli"]

    lint = subprocess.run(
        [*sluice, "lint", str(path), str(DEMO_SPEC)], env=env, capture_output=True, text=True, timeout=120
    )

    assert lint.returncode == 1
    assert_reported(case, path, lint.stdout, lint.stderr)
    assert f"ok  {DEMO_SPEC}  (flights_delay)" in lint.stdout
    # plan imports scikit-learn in a fresh process (seconds on a busy machine): two cases are enough.
    commands = [["plan", str(path)]] if name in ("cron_bad_preset", "model_class_typo") else []
    commands += [] if case.needs_import else [["status", str(path)]]
    for argv in commands:
        run = subprocess.run([*sluice, *argv], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 1, argv
        assert_reported(case, path, run.stdout, run.stderr)
