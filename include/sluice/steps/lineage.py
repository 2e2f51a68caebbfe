"""Where a model came from: code version, run identity, and the batches it was trained on and held out."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def git_commit(project_dir: Path) -> str:
    """The project's git commit (with ``-dirty`` when there are local changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


#: MLflow tag: the batches whose rows the model was fitted on (comma-separated batch ids).
TRAINED_ON = "sluice.batches.trained_on"
#: MLflow tag: the batches whose rows were held out to score it ('' when none were).
HELD_OUT = "sluice.batches.held_out"
#: MLflow tag of a refit run (and its registered version): the candidate run the gate evaluated.
EVALUATED_RUN = "sluice.evaluated_run_id"
#: MLflow tag: the training window, every batch the run read (trained on or held out).
#: Runs from before the two tags above carry only this one.
WINDOW = "sluice.batches"


def _ids(value: str | None) -> list[str]:
    return [b for b in (value or "").split(",") if b]


@dataclass(frozen=True)
class RunBatches:
    """The batches behind a model's MLflow run, from its tags.

    Attributes:
        trained_on: Batches with rows the model was fitted on.
        held_out: Batches with rows held out from fitting (to score the model). A batch split
            row by row (a random holdout, or ``features.scope: history``) is in both lists.
        window: Every batch the run read, oldest first.
        legacy: True for a run from before the separate tags: only ``sluice.batches`` is
            known, and it is read as ``trained_on`` (what it was taken to mean then).
    """

    trained_on: list[str]
    held_out: list[str]
    window: list[str]
    legacy: bool = False


def run_batches(tags: Mapping[str, str]) -> RunBatches:
    """What a run's tags say it was trained on and held out (older runs: ``sluice.batches`` only)."""
    window = _ids(tags.get(WINDOW))
    if TRAINED_ON not in tags:
        return RunBatches(trained_on=window, held_out=[], window=window, legacy=True)
    trained_on, held_out = _ids(tags.get(TRAINED_ON)), _ids(tags.get(HELD_OUT))
    window = window or list(dict.fromkeys([*trained_on, *held_out]))
    return RunBatches(trained_on=trained_on, held_out=held_out, window=window)


def batch_tags(trained_on: list[str], held_out: list[str], window: list[str]) -> dict[str, str]:
    """The lineage tags naming what a model was trained on, what was held out, and the window."""
    return {WINDOW: ",".join(window), TRAINED_ON: ",".join(trained_on), HELD_OUT: ",".join(held_out)}


def describe_champion(version: str, run_id: str, tags: Mapping[str, str]) -> list[str]:
    """Lines for ``sluice status``: the champion, what it was trained on and what was held out."""
    batches = run_batches(tags)
    lines = [f"champion v{version} (MLflow run {run_id})"]
    if batches.legacy:
        return [
            *lines,
            f"  batches: {', '.join(batches.window) or 'none'} (a run from before sluice tagged the batches "
            "trained on and held out apart: these include any held-out batch)",
        ]
    lines += [
        f"  trained on: {', '.join(batches.trained_on) or 'none'}",
        f"  held out:   {', '.join(batches.held_out) or 'none'}",
    ]
    if EVALUATED_RUN in tags:
        lines.append(
            f"  refit on train + holdout after the gate passed run {tags[EVALUATED_RUN]} "
            f"(the gate's decision record: {tags.get('sluice.gate.decision', 'its gate/decision.json')})"
        )
    return lines


def champion_lines(project_dir: Path, pipeline: str) -> list[str]:
    """:func:`describe_champion` of the pipeline's champion, read from MLflow (a line saying why not, else)."""
    from sluice.services import tracking

    try:
        client = tracking.configure(project_dir)
        champ = tracking.champion(client, pipeline)
        if champ is None:
            return ["champion: none yet"]
        tags = client.get_run(str(champ.run_id)).data.tags
    except Exception as exc:  # status reports what it can: MLflow down or unset is one line, not a traceback
        return [f"champion: unknown ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"]
    return describe_champion(str(champ.version), str(champ.run_id), tags)
