"""What the demo's months 1, 2 and 5 must show, in the embedded default and in the production shape."""

from __future__ import annotations

from typing import Any


def check_demo_months(months: list[dict[str, Any]]) -> None:
    """Assert the summary rows of months 1, 2 and 5 of the demo.

    January trains the first champion by hand; February's 40 corrupted rows are quarantined and
    it does not drift; May drifts, retrains by itself and is gated against the January champion.
    Every monitor run is green: drift is reported by the alert email and the asset event.
    """
    jan, feb, may = months
    assert [m["month"] for m in (jan, feb, may)] == [1, 2, 5]
    assert [m["batch"]["status"] for m in (jan, feb, may)] == ["accepted"] * 3
    assert [m["monitor"] for m in (jan, feb, may)] == ["success"] * 3, "drift is news, not a failed run"

    assert jan["trigger"]["triggers"] == ["manual"]
    assert jan["drift"]["status"] == "no_reference"
    assert jan["decision"]["verdict"] == "pass" and jan["deployed"] == "1", "the first model becomes champion"

    assert feb["batch"]["quarantined"] == 40, "the corrupted rows of month 2 are quarantined"
    assert feb["drift"]["status"] == "compared" and not feb["drift"]["drift_detected"]
    assert feb["trigger"] is None, "no drift, no retraining"

    assert may["drift"]["drift_detected"] and may["drift"]["drift_share"] >= may["drift"]["threshold"]
    assert may["drift"]["reference_batches"] == [jan["batch"]["batch_id"]]
    assert may["trigger"]["triggers"] == ["drift"] and may["trigger"]["proceed"]
    assert may["run"]["run_type"].endswith("asset_triggered")
    assert may["decision"]["verdict"] in {"pass", "fail"}
    assert may["decision"]["champion"]["version"] == "1", "the gate compared against the January champion"
    assert may["deployed"] == ("2" if may["decision"]["verdict"] == "pass" else None)
