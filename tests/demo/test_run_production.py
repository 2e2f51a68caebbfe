"""The production demo's pass rule follows the months asked for (issue 29).

``--months 1 --beside ''`` ran ingest, train, gate and deploy and still printed FAILED: the
rule wanted a drift retrain whatever months were asked. :func:`demo.run_production.problems`
is pure: these summaries are what :func:`demo.run_production.play` returns, cut to what it reads.
"""

from __future__ import annotations

from typing import Any

from demo.run_production import print_summary, problems

BOTH_WORKERS = {"w1@host": 9, "w2@host": 7}


def month(number: int, drift: bool | None = None, retrain: str | None = None, gated: bool = False) -> dict[str, Any]:
    """One row of a summary: month ``number`` accepted; its drift, what retrained it, whether it was gated."""
    return {
        "month": number,
        "batch": {"batch_id": f"b{number}", "status": "accepted", "quarantined": 0},
        "drift": None if drift is None else {"status": "compared", "drift_detected": drift, "drift_share": 0.5},
        "trigger": {"triggers": [retrain]} if retrain else None,
        "decision": {"verdict": "pass"} if gated else None,
        "deployed": "1" if gated and number == 1 else None,
    }


def summary(*rows: dict[str, Any], pipeline: str = "flights_delay") -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "months": list(rows),
        "deployed": {"version": "1", "url": "http://127.0.0.1:1/invocations"},
        "hostnames": BOTH_WORKERS,
        "seconds": 60.0,
    }


FIRST = month(1, retrain="manual", gated=True)


def test_one_month_that_trained_gated_and_deployed_passes(capsys: Any) -> None:
    assert problems(summary(FIRST), [1]) == []
    assert print_summary(summary(FIRST), [1])
    assert capsys.readouterr().out.rstrip().endswith("demo-production: OK")


def test_the_default_months_need_the_drift_retrain_of_may() -> None:
    calm, may = month(2, drift=False), month(5, drift=True, retrain="drift", gated=True)
    assert problems(summary(FIRST, calm, may), [1, 2, 5]) == []
    unseen = month(5, drift=False)
    assert problems(summary(FIRST, calm, unseen), [1, 2, 5]) == [
        "month(s) [5] should drift against month 1: no drift retrain happened"
    ]


def test_a_drifted_month_that_was_not_retrained_fails() -> None:
    stuck = month(3, drift=True)
    assert problems(summary(FIRST, stuck), [1, 3]) == [
        "flights_delay month 03: drift detected but no retrain reached the gate"
    ]
    assert problems(summary(FIRST, month(3, drift=False)), [1, 3]) == [], "calm months ask for nothing more"


def test_what_always_counts() -> None:
    rejected = {**FIRST, "batch": {"batch_id": "b1", "status": "rejected"}}
    assert "flights_delay month 01: batch rejected" in problems(summary(rejected), [1])
    ungated = month(1, retrain="manual")
    assert "flights_delay month 01: the first model never reached the gate" in problems(summary(ungated), [1])
    one_worker = {**summary(FIRST), "hostnames": {"w1@host": 12}}
    assert problems(one_worker, [1]) == ["tasks ran on 1 Celery worker(s), not both"]
    assert problems(summary(FIRST), [1, 2]) == ["months played [1], asked [1, 2]"]


def test_the_pipeline_beside_must_train_at_the_same_time() -> None:
    run = {"start": 100.0, "end": 200.0}
    twin = summary({**FIRST, "run": {"start": 150.0, "end": 250.0}}, pipeline="flights_twin")
    together = {**summary({**FIRST, "run": run}), "beside": twin}
    assert problems(together, [1]) == []
    apart = {**together, "beside": summary({**FIRST, "run": {"start": 300.0, "end": 400.0}}, pipeline="flights_twin")}
    assert problems(apart, [1]) == ["the two first train runs did not overlap"]
