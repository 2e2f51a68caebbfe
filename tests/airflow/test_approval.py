"""What the approver is shown: the gate's evidence."""

from __future__ import annotations

from sluice.airflow.operators.approval import evidence_markdown
from tests.airflow.test_alerts import DECISION


def test_approval_body_shows_candidate_vs_champion_thresholds_checks_and_links() -> None:
    passed = DECISION | {
        "verdict": "pass",
        "candidate": {"run_id": "cand123", "score": 0.6441},
        "checks": [{"name": "vs_champion", "passed": True, "detail": "candidate 0.6441 >= champion 0.6350 - 0.005"}],
    }
    body = evidence_markdown("flights_delay", passed)

    assert "| candidate | 0.6441 | [cand123](http://localhost:5000/#/runs/cand123) |" in body
    assert "| champion v1 | 0.6350 | [champ456](http://localhost:5000/#/runs/champ456) |" in body
    assert "min 0.6500, max n/a, max_regression_vs_champion 0.0050" in body
    assert "- passed: candidate 0.6441 >= champion 0.6350 - 0.005" in body
    assert "flights_delay__monitor" in body


def test_approval_body_names_the_batches_trained_on_and_held_out() -> None:
    passed = DECISION | {
        "verdict": "pass",
        "candidate": {"run_id": "cand123", "score": 0.6441, "trained_on": ["jan", "feb"]},
        "holdout": DECISION["holdout"] | {"batches": ["mar"]},
    }
    body = evidence_markdown("flights_delay", passed)
    assert "Trained on batches: jan, feb; held out: mar." in body
    assert "Trained on" not in evidence_markdown("flights_delay", DECISION), "older records: no batch line"


def test_approval_body_without_a_decision_says_not_to_approve() -> None:
    assert "do not approve" in evidence_markdown("flights_delay", None)


def test_approval_body_with_an_unreadable_decision_says_so_and_not_to_approve() -> None:
    body = evidence_markdown("flights_delay", {"verdict": "maybe"})
    assert body.startswith("The decision record for **flights_delay** could not be read: do not approve without one.")
    assert "not a valid GateDecision record" in body and "verdict" in body
