"""Should this train run retrain? Say what started it, and hold back bursts and repeats.

Airflow collapses asset events that arrive while a train run is queued or running into one
next run; this step is the second half of "a burst gives one retrain": that next run is
skipped when it would train on exactly the data the last retrain used, when it falls inside
the spec's cooldown, or when it was started by drift alone and no labelled data arrived
since the champion was trained (a retrain would only reproduce the champion).
"""

from __future__ import annotations

import time

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.steps.features import training_batches
from sluice.steps.lineage import run_batches
from sluice.steps.records import AssetEvent, Trigger, decode, encode
from sluice.steps.records import TriggerDecision as TriggerDecision

TRIGGER_FILE = "trigger.json"


def last_retrain(store: PipelineStore, except_run: str) -> TriggerDecision | None:
    """The latest recorded decision that went on to train, other than ``except_run``'s."""
    found = []
    for name in store.ls("runs"):
        data = store.json.read_or_none(store.keys.run(name.rstrip("/"), TRIGGER_FILE)) if name.endswith("/") else None
        record = decode(TriggerDecision, data) if data is not None else None
        if record is not None and record.proceed and record.airflow_run_id != except_run:
            found.append(record)
    return max(found, key=lambda r: r.decided_at) if found else None


def decide(
    triggers: list[Trigger],
    accepted: list[str],
    champion_batches: list[str] | None,
    champion_version: str | None,
    previous: TriggerDecision | None,
    cooldown_minutes: int,
    now: float,
) -> tuple[bool, str]:
    """The rules, as a pure function.

    Args:
        triggers: What started the run ('manual', 'schedule', 'new_data', 'drift').
        accepted: Accepted batch ids now.
        champion_batches: Batches the champion's run read (trained on or held out), or None without a champion.
        champion_version: Champion version for the messages.
        previous: The last decision that trained (see :func:`last_retrain`), or None.
        cooldown_minutes: The spec's ``retrain_cooldown_minutes``.
        now: Epoch seconds.

    Returns:
        (proceed, reason).
    """
    what = " + ".join(triggers)
    if Trigger.MANUAL in triggers:
        return True, "triggered by hand (airflow dags trigger): cooldown and data checks do not apply"
    if not accepted:
        return False, f"started by {what} but no batch has been accepted yet: nothing to train on"
    if previous is not None and cooldown_minutes:
        age = now - previous.decided_at
        if age < cooldown_minutes * 60:
            return False, (
                f"started by {what} within the cooldown: last retrain {age / 60:.1f} min ago "
                f"(run {previous.airflow_run_id}), retrain_cooldown_minutes is {cooldown_minutes}"
            )
    asset_only = set(triggers) <= {Trigger.NEW_DATA, Trigger.DRIFT}
    if asset_only and previous is not None and sorted(previous.batches) == sorted(accepted):
        return False, (
            f"started by {what} but run {previous.airflow_run_id} already retrained on exactly these "
            f"{len(accepted)} batch(es): no new data since"
        )
    if set(triggers) == {Trigger.DRIFT} and champion_batches is not None:
        new = [b for b in accepted if b not in set(champion_batches)]
        if not new:
            return False, (
                f"retraining on drift skipped: no new labelled data since champion v{champion_version} was "
                f"trained (it used all {len(accepted)} accepted batch(es)); a retrain would reproduce it"
            )
        return True, f"drift, with {len(new)} batch(es) the champion v{champion_version} was not trained on"
    return True, f"started by {what}"


def triggers_of(run_type: str, asset_uris: list[str], batches_uri: str, drift_uri: str) -> list[Trigger]:
    """Name what started a run from its Airflow run type and triggering asset URIs."""
    if run_type in ("manual", "backfill"):
        return [Trigger.MANUAL]
    if run_type == "scheduled":
        return [Trigger.SCHEDULE]
    found = []
    if batches_uri in asset_uris:
        found.append(Trigger.NEW_DATA)
    if drift_uri in asset_uris:
        found.append(Trigger.DRIFT)
    return found or [Trigger.MANUAL]


def check_trigger(
    loaded: LoadedSpec,
    store: PipelineStore,
    triggers: list[Trigger],
    events: list[AssetEvent],
    airflow_run_id: str,
) -> TriggerDecision:
    """Decide and record whether this train run retrains; a retry returns the recorded decision."""
    from sluice.services import tracking

    key = store.keys.run(airflow_run_id, TRIGGER_FILE)
    recorded = store.json.read_or_none(key)
    if recorded is not None:
        return decode(TriggerDecision, recorded)
    spec = loaded.spec
    client = tracking.configure(loaded.project_dir)
    champ = tracking.champion(client, spec.pipeline)
    champion_batches = None
    if champ is not None:
        # Every batch the champion's run read (trained on or held out): a retrain on drift needs
        # a batch it has not seen at all.
        champion_batches = run_batches(client.get_run(str(champ.run_id)).data.tags).window
    # The batches a retrain would read (training.window applied), so "no new data" and "the
    # champion already saw all of it" compare like with like.
    accepted = [r.batch_id for r in training_batches(store.batches.accepted(), spec.training.window)]
    now = time.time()
    proceed, reason = decide(
        triggers,
        accepted,
        champion_batches,
        str(champ.version) if champ else None,
        last_retrain(store, airflow_run_id),
        spec.retrain_cooldown_minutes,
        now,
    )
    decision = TriggerDecision(
        proceed=proceed,
        triggers=triggers,
        reason=reason,
        batches=accepted,
        champion_version=str(champ.version) if champ else None,
        events=events,
        airflow_run_id=airflow_run_id,
        decided_at=now,
    )
    store.json.write(key, encode(decision))
    return decision
