"""When a train run retrains: triggers, cooldown, bursts and drift without new data (pure logic)."""

from __future__ import annotations

from sluice.steps.records import Trigger, TriggerDecision
from sluice.steps.retrain import decide, triggers_of

BATCHES = "sluice://p/batches"
DRIFT = "sluice://p/drift"
NOW = 1_000_000.0


def previous(batches: list[str], minutes_ago: float, run: str = "earlier") -> TriggerDecision:
    return TriggerDecision(
        proceed=True,
        triggers=[Trigger.NEW_DATA],
        reason="started by new_data",
        batches=batches,
        champion_version=None,
        airflow_run_id=run,
        decided_at=NOW - minutes_ago * 60,
    )


def test_triggers_are_named_from_run_type_and_assets() -> None:
    assert triggers_of("manual", [], BATCHES, DRIFT) == ["manual"]
    assert triggers_of("scheduled", [], BATCHES, DRIFT) == ["schedule"]
    assert triggers_of("asset_triggered", [DRIFT], BATCHES, DRIFT) == ["drift"]
    assert triggers_of("asset_triggered", [DRIFT, BATCHES, DRIFT], BATCHES, DRIFT) == ["new_data", "drift"]


def test_drift_without_new_labelled_data_is_skipped() -> None:
    proceed, reason = decide(["drift"], ["a", "b"], ["a", "b"], "3", None, 0, NOW)
    assert not proceed
    assert "no new labelled data since champion v3 was trained" in reason


def test_drift_with_data_the_champion_never_saw_retrains() -> None:
    proceed, reason = decide(["drift"], ["a", "b", "c"], ["a"], "1", previous(["a"], 600), 0, NOW)
    assert proceed and "2 batch(es) the champion v1 was not trained on" in reason


def test_a_burst_after_a_retrain_on_the_same_data_is_skipped() -> None:
    for triggers in (["drift"], ["new_data"], ["new_data", "drift"]):
        proceed, reason = decide(triggers, ["a", "b"], ["a"], "1", previous(["b", "a"], 1, "run-1"), 0, NOW)
        assert not proceed, triggers
        assert "run-1 already retrained on exactly these 2 batch(es)" in reason


def test_cooldown_holds_automatic_runs_but_not_manual_ones() -> None:
    last = previous(["a"], 10)
    proceed, reason = decide(["new_data"], ["a", "b"], ["a"], "1", last, 30, NOW)
    assert not proceed and "within the cooldown" in reason and "retrain_cooldown_minutes is 30" in reason
    assert decide(["new_data"], ["a", "b"], ["a"], "1", last, 5, NOW)[0], "cooldown over"
    assert decide(["schedule"], ["a", "b"], ["a"], "1", last, 30, NOW)[0] is False
    assert decide(["manual"], ["a", "b"], ["a"], "1", last, 30, NOW)[0]


def test_nothing_to_train_on_is_skipped_unless_asked_by_hand() -> None:
    proceed, reason = decide(["drift"], [], None, None, None, 0, NOW)
    assert not proceed and "nothing to train on" in reason
    assert decide(["manual"], [], None, None, None, 0, NOW)[0]


def test_a_cron_retrain_on_unchanged_data_still_runs() -> None:
    assert decide(["schedule"], ["a"], ["a"], "1", previous(["a"], 600), 0, NOW)[0]
