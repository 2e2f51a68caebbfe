"""The pinned schema: what batches are held to when the spec declares no ``source.columns``.

Rules (the "Pinned schema" section of docs/how-it-works.md says the same):

* the validate step of the first *accepted* batch infers its columns (as ``sluice
  infer-schema`` would from its file), validates the batch against them, and, once the batch
  is accepted, writes them to ``schema/pinned.json`` before the batch's outcome: a rejected
  first batch pins nothing, and a retry after a kill finds either no pin (and infers again)
  or the whole pin (written atomically) from this same batch;
* every later batch is held to the pin exactly as to a declared schema: same rules, same
  messages, the reason naming the pin;
* a store that already had accepted batches when pinning came in pins from the oldest of
  them (its raw file), not from whatever batch comes next;
* ``source.columns``, once declared, wins over the pin (which stays, unused);
* only ``sluice schema-pin`` changes it: ``--from-batch ID`` re-pins from a batch's raw file,
  ``--reset`` drops it (the next accepted batch pins again).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sluice.services.storage import PipelineStore
from sluice.steps.records import RecordError, SchemaPin, decode, encode

if TYPE_CHECKING:
    import pandas as pd

#: The pin's file in the pipeline's storage (under ``store.keys.schema()``).
PIN = "pinned.json"

FIRST_ACCEPTED = "first accepted batch"
OLDEST_ACCEPTED = "oldest accepted batch"
FROM_BATCH = "sluice schema-pin --from-batch"
RESET = "sluice schema-pin --reset"

__all__ = [
    "PIN",
    "ActiveSchema",
    "PinError",
    "active_schema",
    "changes",
    "drift_note",
    "infer_batch",
    "new_pin",
    "pin_from_batch",
    "read_pin",
    "reset_pin",
    "status_lines",
    "write_pin",
]


class PinError(ValueError):
    """The pin file is there but is not a pin (edited by hand, or written by a newer sluice)."""


def pin_key(store: PipelineStore) -> str:
    """The key of the pin in ``store``."""
    return store.keys.schema(PIN)


def read_pin(store: PipelineStore) -> SchemaPin | None:
    """The pin as written, or None when the pipeline never had one.

    Raises:
        PinError: The file does not decode, with where it is and the fix.
    """
    key = pin_key(store)
    try:
        data = store.json.read_or_none(key)
        return None if data is None else decode(SchemaPin, data)
    except (ValueError, RecordError) as exc:
        raise PinError(
            f"{store.location(key)}: not a schema pin ({exc}); drop it with `sluice schema-pin SPEC --reset` "
            "or re-pin with `sluice schema-pin SPEC --from-batch ID`"
        ) from None


def write_pin(store: PipelineStore, pin: SchemaPin) -> None:
    """Replace the pin atomically (readers see the old pin or the new one, never part of one)."""
    store.json.write(pin_key(store), encode(pin))


def new_pin(
    columns: Mapping[str, str] | None, guessed: list[str], how: str, batch_id: str | None, source_file: str = ""
) -> SchemaPin:
    """A pin of ``columns`` (None: dropped), stamped now."""
    return SchemaPin(
        columns=None if columns is None else list(columns.items()),  # type: ignore[arg-type]
        batch_id=batch_id,
        source_file=source_file,
        pinned_at=time.time(),
        how=how,
        guessed=guessed,
    )


def infer_frame(frame: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """The columns a batch pins (as ``sluice infer-schema`` infers them) and those that are guesses."""
    from sluice.steps.schema import infer_columns

    columns = infer_columns(frame)
    return columns, [str(c) for c in frame.columns if frame[c].isna().all()]


def infer_batch(store: PipelineStore, batch_id: str, fmt: str) -> tuple[dict[str, str], list[str]]:
    """:func:`infer_frame` of a batch's raw file (it exists for every landed batch, accepted or not)."""
    from sluice.steps.schema import read_frame

    record = store.batches.get(batch_id)
    source = store.keys.batch(batch_id, f"source{record.source_suffix or '.' + fmt}")
    with store.open_read(source) as fh:
        return infer_frame(read_frame(fh, fmt))


@dataclass(frozen=True)
class ActiveSchema:
    """What one validation holds a batch to.

    Attributes:
        columns: The schema (declared or pinned), or None when the batch itself pins.
        pin: The pin in use (None for a declared schema, or when the batch pins).
        pins: True when the batch is to infer the schema and pin it if accepted.
    """

    columns: Mapping[str, str] | None
    pin: SchemaPin | None = None
    pins: bool = False


def active_schema(store: PipelineStore, declared: Mapping[str, str] | None, fmt: str) -> ActiveSchema:
    """The schema a batch is validated against: ``source.columns``, else the pin, else none yet.

    A store with accepted batches and no pin file (they were accepted before pinning existed)
    is pinned here from the oldest of them, so the next batch is held to what came first
    rather than pinning whatever it brings.
    """
    if declared:
        return ActiveSchema(declared)
    pin = read_pin(store)
    if pin is None:
        accepted = store.batches.accepted()
        if accepted:
            first = accepted[0]
            columns, guessed = infer_batch(store, first.batch_id, fmt)
            pin = new_pin(columns, guessed, OLDEST_ACCEPTED, first.batch_id, first.source_file)
            write_pin(store, pin)
    if pin is None or pin.types is None:
        return ActiveSchema(None, pins=True)
    return ActiveSchema(pin.types, pin=pin)


def drift_note(pin: SchemaPin) -> str:
    """What a schema-drift reason adds when the schema is a pin, not ``source.columns``."""
    return (
        f"; no source.columns declared: the schema is pinned from batch {pin.batch_id} "
        "(if the new types are right: sluice schema-pin SPEC --from-batch <this batch>, then sluice revalidate)"
    )


def pin_from_batch(store: PipelineStore, batch_id: str, fmt: str) -> tuple[SchemaPin | None, SchemaPin]:
    """Re-pin from a batch's raw file (``sluice schema-pin --from-batch``).

    Returns:
        The pin before (None if none) and the new one.

    Raises:
        ValueError: No batch ``batch_id``, naming the batches there are.
    """
    if not store.batches.has(batch_id):
        known = ", ".join(store.batches.ids()) or "none"
        raise ValueError(f"no batch {batch_id!r} in {store.location('batches')} (batches: {known})")
    before = read_pin_or_none(store)
    columns, guessed = infer_batch(store, batch_id, fmt)
    record = store.batches.get(batch_id)
    pin = new_pin(columns, guessed, FROM_BATCH, batch_id, record.source_file)
    write_pin(store, pin)
    return before, pin


def reset_pin(store: PipelineStore) -> SchemaPin | None:
    """Drop the pin (``sluice schema-pin --reset``): the next accepted batch pins again.

    A record of the reset replaces the pin, so a store with accepted batches does not re-pin
    from the oldest of them. Returns the pin before (None if none).
    """
    before = read_pin_or_none(store)
    write_pin(store, new_pin(None, [], RESET, None))
    return before


def read_pin_or_none(store: PipelineStore) -> SchemaPin | None:
    """The pin, or None when there is none or it does not decode (what re-pinning replaces)."""
    try:
        return read_pin(store)
    except PinError:
        return None


def changes(before: Mapping[str, str] | None, after: Mapping[str, str] | None) -> list[str]:
    """What a new pin changes, one line a column: ``distance: int -> string``, ``+ x: float``, ``- y (was int)``."""
    old, new = dict(before or {}), dict(after or {})
    lines = [f"{c}: {old[c]} -> {new[c]}" for c in new if c in old and old[c] != new[c]]
    lines += [f"+ {c}: {new[c]}" for c in new if c not in old]
    lines += [f"- {c} (was {old[c]})" for c in old if c not in new]
    return lines


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def status_lines(store: PipelineStore, declared: Mapping[str, str] | None, spec_shown: str) -> list[str]:
    """What ``sluice status`` says about the schema batches are held to.

    Args:
        store: The pipeline's storage.
        declared: ``source.columns`` (None when not declared).
        spec_shown: The spec's path as the user named it (for the commands in the hints).
    """
    try:
        pin = read_pin(store)
    except PinError as exc:
        return [f"schema: {exc}"]
    if declared:
        unused = f" (the pin from batch {pin.batch_id} is not used while it is)" if pin and pin.columns else ""
        return [f"schema: source.columns declared ({len(declared)} columns){unused}"]
    hint = f"sluice schema-pin {spec_shown} --show | --from-batch ID | --reset"
    if pin is None or pin.columns is None:
        dropped = f"pin dropped {_when(pin.pinned_at)}; " if pin is not None else ""
        return [
            f"schema: {dropped}not pinned yet: the first accepted batch pins its columns (or declare source.columns)"
        ]
    lines = [
        f"schema: pinned from batch {pin.batch_id} ({pin.source_file or 'file unknown'}, {pin.how}, "
        f"{_when(pin.pinned_at)}): {len(pin.columns)} columns, every batch is held to them ({hint})"
    ]
    if pin.guessed:
        lines.append(
            f"schema: {', '.join(pin.guessed)} had no values in batch {pin.batch_id}: pinned as string, a guess "
            f"(re-pin from a batch where they have values, or declare source.columns)"
        )
    return lines
