"""``promote`` killed (SIGKILL) between its durable writes: the retry finishes one promotion.

``promote`` registers the candidate, tags the version (gate verdict, score, the champion it
replaces), then moves ``@champion``. Before: a kill after the alias moved made the retry
report the new version as its own ``previous``, so the Kubernetes deploy's rollback target
was the version being rolled out.
"""

from __future__ import annotations

import pytest

from sluice.services.storage import read_json
from tests.conftest import Project
from tests.faults.conftest import accepted_batch
from tests.faults.kill import kill_script
from tests.storage import local

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# The promote task's work, in a process of its own.
PROMOTE = """
    import json, sys
    from pathlib import Path
    from sluice.spec.loader import load_spec
    from sluice.steps.promote import promote
    from sluice.steps.records import GateDecision, decode
    promote(load_spec(sys.argv[1]), decode(GateDecision, json.loads(Path(sys.argv[2]).read_text())))
    """


def test_a_promote_killed_between_its_writes_is_finished_once_by_the_retry(flights_project: Project) -> None:
    from sluice.services import tracking
    from sluice.steps.evaluate import evaluate_candidate
    from sluice.steps.features import build_features
    from sluice.steps.promote import PREVIOUS_TAG, promote
    from sluice.steps.records import GateDecision, decode
    from sluice.steps.train import train_candidate

    project = flights_project
    spec, loaded, store, _ = accepted_batch(project)
    features = build_features(loaded, store)
    client = tracking.configure(project.root)

    def decide(run: str) -> GateDecision:
        trained = train_candidate(loaded, store, features, "flights_delay__train", run)
        decision = evaluate_candidate(loaded, store, trained, run)
        assert decision.verdict == "pass", decision.reason
        return decision

    def kill(point: str, run: str) -> str:
        """Kill a promote of ``run``'s decision at ``point``; return the registered version."""
        kill_script(point, project.root, PROMOTE, str(spec), str(local(store, store.keys.run(run)) / "decision.json"))
        run_id = read_json(local(store, store.keys.run(run)) / "decision.json")["candidate"]["run_id"]
        versions = client.search_model_versions(f"name='flights_delay' and run_id='{run_id}'")
        assert len(versions) == 1, f"{point}: registered once, whatever was killed before"
        return str(versions[0].version)

    def champion() -> str | None:
        found = tracking.champion(client, "flights_delay")
        return None if found is None else str(found.version)

    def agree(run: str, version: str, previous: str | None) -> None:
        """@champion, the version's tags and this run's decision record name the same candidate."""
        found = tracking.champion(client, "flights_delay")
        assert found is not None and str(found.version) == version
        recorded = read_json(local(store, store.keys.run(run)) / "decision.json")
        assert found.run_id == recorded["candidate"]["run_id"] and recorded["verdict"] == "pass"
        assert found.tags[PREVIOUS_TAG] == (previous or "")
        assert promote(loaded, decode(GateDecision, recorded)).changed is False, "a further retry changes nothing"

    # The first promotion, killed after registering, then (its retry) after tagging: no alias yet.
    first = decide("run-1")
    assert kill("promote.registered", "run-1") == "1" and champion() is None
    assert kill("promote.tagged", "run-1") == "1" and champion() is None
    result = promote(loaded, first)
    # What the deploy and the alert read: the new version, and the champion it replaced (none).
    assert (result.version, result.previous, result.changed) == ("1", None, True)
    agree("run-1", "1", None)

    # The next promotion, killed once the alias had moved: the retry changes nothing, and
    # still names v1 as the previous champion (the Kubernetes deploy's rollback target).
    second = decide("run-2")
    assert kill("promote.alias_set", "run-2") == "2" and champion() == "2"
    result = promote(loaded, second)
    assert (result.version, result.previous, result.changed) == ("2", "1", False)
    agree("run-2", "2", "1")

    experiment = client.get_experiment_by_name("flights_delay")
    assert experiment is not None
    assert client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'") == []
