"""The pinned schema: a spec without ``source.columns`` holds later batches to the first accepted one's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from tests.conftest import REPO, demo_spec_dict
from tests.storage import local

from sluice.cli import main
from sluice.services.storage import PipelineStore, read_json
from sluice.spec.models import Validation
from sluice.steps.ingest import land_new_files
from sluice.steps.schema_pin import PIN, read_pin
from sluice.steps.validate import validate_batch

COLUMNS = {"carrier": "string", "distance": "int", "arr_delay": "float"}
QUARANTINE = Validation.model_validate({"on_failure": "quarantine", "max_quarantine_rate": 0.5})


def flights(rows: int = 6, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "carrier": ["UA", "AA", "DL"] * (rows // 3),
            "distance": np.arange(start, start + rows) * 100 + 100,
            "arr_delay": np.linspace(-5, 30, rows),
        }
    )


class Pipeline:
    """One pipeline's landing folder and store; ``drop`` lands a file and validates it."""

    def __init__(self, root: Path, validation: Validation = QUARANTINE) -> None:
        self.landing = root / "in"
        self.landing.mkdir(parents=True, exist_ok=True)
        self.store = PipelineStore(root / "store", "p")
        self.validation = validation

    def drop(self, name: str, df: pd.DataFrame, columns: dict[str, str] | None = None) -> tuple[str, str, str]:
        """Land ``df`` as ``name`` and validate it; returns (batch id, status, reason)."""
        path = self.landing / name
        if name.endswith(".csv"):
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        (batch,) = land_new_files(str(path), self.store, f"run-{name}").new
        fmt = "csv" if name.endswith(".csv") else "parquet"
        out = validate_batch(self.store, batch, self.validation, fmt, columns=columns)
        return batch, out.status, out.reason

    def report(self, batch: str) -> dict:
        return read_json(local(self.store, self.store.keys.batch(batch)) / "validation.json")


def test_first_accepted_batch_pins_and_a_later_drifted_one_gets_the_declared_schema_message(tmp_path: Path) -> None:
    pinned = Pipeline(tmp_path / "pinned")
    first, status, _ = pinned.drop("m1.parquet", flights())
    assert status == "accepted"
    pin = read_pin(pinned.store)
    assert pin is not None and pin.types == COLUMNS and pin.batch_id == first and pin.source_file == "m1.parquet"
    assert (local(pinned.store) / "schema" / PIN).exists()

    drifted = flights(start=6).astype({"distance": str})
    batch, status, reason = pinned.drop("m2.parquet", drifted)

    # The same batch against the same schema, declared: the same message.
    declared = Pipeline(tmp_path / "declared")
    declared.drop("m1.parquet", flights(), COLUMNS)
    _, declared_status, declared_reason = declared.drop("m2.parquet", drifted, COLUMNS)
    assert (status, declared_status) == ("rejected", "rejected")
    assert "schema drift: column 'distance': declared int, arrives as string (e.g. '700'" in reason
    assert reason.startswith(declared_reason), "the declared schema's message, then the pin's note"
    assert f"pinned from batch {first}" in reason and "sluice schema-pin" in reason
    assert pinned.store.batches.get(batch).status == "rejected"
    assert pinned.report(batch)["schema"]["origin"] == f"pinned from batch {first}"
    assert read_pin(pinned.store) == pin, "a rejected batch never changes the pin"


def test_csv_cells_that_do_not_parse_as_the_pinned_type_are_quarantined_as_with_a_declared_schema(
    tmp_path: Path,
) -> None:
    results = {}
    for name, columns in (("pinned", None), ("declared", COLUMNS)):
        pipe = Pipeline(tmp_path / name)
        pipe.drop("m1.csv", flights(), columns)
        bad = flights(start=6).astype({"distance": object})
        bad.loc[[1, 4], "distance"] = "n/a km"
        batch, status, reason = pipe.drop("m2.csv", bad, columns)
        quarantine = pd.read_parquet(local(pipe.store, pipe.store.keys.batch(batch, "quarantine.parquet")))
        clean = local(pipe.store, pipe.store.keys.batch(batch, "clean.parquet"))
        results[name] = (status, reason, list(quarantine["_sluice_failed_checks"]), str(pq.read_schema(clean)))
    assert results["pinned"] == results["declared"]
    assert results["pinned"][:3] == ("accepted", "2 of 6 rows quarantined (33.33% <= 50.00%)", ["type:distance"] * 2)


def test_every_accepted_batch_of_a_pinned_pipeline_has_one_parquet_schema(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    first, _, _ = pipe.drop("m1.parquet", flights())
    # Ints with nulls arrive as floats, and a column is added: both pass the pin, as declared.
    second = flights(start=6).assign(distance=lambda d: d["distance"].astype(float), extra="x")
    second.loc[0, "distance"] = np.nan
    batch, status, _ = pipe.drop("m2.parquet", second)
    assert status == "accepted"
    schemas = {
        str(pq.read_schema(local(pipe.store, pipe.store.keys.batch(b, "clean.parquet")))) for b in (first, batch)
    }
    assert len(schemas) == 1, schemas
    assert pipe.report(batch)["schema"]["extra_dropped"] == ["extra"]


def test_a_rejected_first_batch_does_not_pin_and_the_next_accepted_one_does(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path, Validation.model_validate({"on_failure": "fail"} | _distance_checked()))
    bad = flights().astype({"distance": str})
    _, status, _ = pipe.drop("m1.parquet", bad.assign(distance="-1"))
    assert status == "rejected"
    assert read_pin(pipe.store) is None, "a rejected batch pins nothing"
    good, status, _ = pipe.drop("m2.parquet", flights())
    assert status == "accepted"
    pin = read_pin(pipe.store)
    assert pin is not None and pin.batch_id == good and pin.types == COLUMNS


def _distance_checked() -> dict:
    return {"expectations": [{"type": "matches_regex", "column": "distance", "regex": "^[0-9]+$"}]}


def test_a_declared_schema_wins_over_the_pin(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    pipe.drop("m1.parquet", flights())
    as_text = {"carrier": "string", "distance": "string", "arr_delay": "float"}
    batch, status, _ = pipe.drop("m2.parquet", flights(start=6).astype({"distance": str}), as_text)
    assert status == "accepted"
    assert pipe.report(batch)["schema"]["origin"] == "source.columns"
    assert read_pin(pipe.store).types == COLUMNS, "the pin stays, unused"


def test_a_retry_after_a_kill_between_pin_and_outcome_gives_the_same_outcome(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    batch, _, reason = pipe.drop("m1.parquet", flights())
    pin = read_pin(pipe.store)
    # What a kill after the pin and before the report leaves: the pin, and a landed batch.
    (local(pipe.store, pipe.store.keys.batch(batch)) / "validation.json").unlink()
    pipe.store.batches.update(batch, status="landed", reason="")
    again = validate_batch(pipe.store, batch, pipe.validation, "parquet")
    assert (again.status, again.reason) == ("accepted", reason)
    assert read_pin(pipe.store) == pin, "written once: the retry holds the batch to its own pin"


def test_a_store_with_accepted_batches_and_no_pin_pins_from_the_oldest(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    first, _, _ = pipe.drop("m1.parquet", flights())
    # Accepted before pinning existed: no pin file.
    pipe.store.remove(pipe.store.keys.schema(PIN))
    _, status, reason = pipe.drop("m2.parquet", flights(start=6).astype({"distance": str}))
    assert status == "rejected" and "declared int, arrives as string" in reason
    pin = read_pin(pipe.store)
    assert pin is not None and (pin.batch_id, pin.how) == (first, "oldest accepted batch")


def test_a_column_with_no_values_is_pinned_as_a_guess(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    pipe.drop("m1.parquet", flights().assign(tail=None))
    pin = read_pin(pipe.store)
    assert pin is not None and pin.types["tail"] == "string" and pin.guessed == ["tail"]


def test_a_hand_broken_pin_stops_validation_with_the_fix(tmp_path: Path) -> None:
    from sluice.steps.schema_pin import PinError

    pipe = Pipeline(tmp_path)
    pipe.store.write_bytes(pipe.store.keys.schema(PIN), b'{"columns": {"distance": "integer"}}')
    with pytest.raises(PinError, match=r"pinned.json: not a schema pin .*--reset"):
        pipe.drop("m1.parquet", flights())


# --------------------------------------------------------------------------- the commands


@pytest.fixture
def spec_without_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Pipeline]:
    """A project whose spec declares no source.columns, and its pipeline's store."""
    project = tmp_path / "proj"
    (project / "dags").mkdir(parents=True)
    shutil.copytree(REPO / "include" / "features", project / "include" / "features")
    data = demo_spec_dict()
    data["source"].pop("columns")
    data["validation"] = {"on_failure": "quarantine", "max_quarantine_rate": 0.5}
    spec = project / "dags" / "flights_delay.pipeline.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(project))
    pipe = Pipeline(tmp_path / "p")
    pipe.store = PipelineStore(project / "data" / "sluice", "flights_delay")
    return spec, pipe


def test_status_and_show_name_the_pin_its_batch_and_columns(
    spec_without_columns: tuple[Path, Pipeline], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, pipe = spec_without_columns
    assert main(["schema-pin", str(spec)]) == 0
    assert "not pinned yet: the first accepted batch pins" in capsys.readouterr().out
    first, _, _ = pipe.drop("m1.parquet", flights())

    assert main(["status", str(spec)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  schema: "))
    assert f"pinned from batch {first} (m1.parquet, first accepted batch" in line
    assert "3 columns" in line and f"sluice schema-pin {spec} --show | --from-batch ID | --reset" in line

    assert main(["schema-pin", str(spec), "--show"]) == 0
    out = capsys.readouterr().out
    assert "  distance: int\n" in out and "  carrier: string\n" in out


def test_repin_from_a_rejected_batch_prints_the_change_and_revalidate_accepts_it(
    spec_without_columns: tuple[Path, Pipeline], capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.steps.ingest import revalidate

    spec, pipe = spec_without_columns
    pipe.drop("m1.parquet", flights())
    batch, status, _ = pipe.drop("m2.parquet", flights(start=6).astype({"distance": str}).assign(gate="A1"))
    assert status == "rejected"

    assert main(["schema-pin", str(spec), "--from-batch", batch]) == 0
    out = capsys.readouterr().out
    assert f"pinned from batch {batch}: 2 change(s)" in out
    assert "  distance: int -> string\n" in out and "  + gate: string\n" in out
    assert f"sluice revalidate {spec} {batch}" in out
    revalidate(pipe.store, batch)
    again = validate_batch(pipe.store, batch, pipe.validation, "parquet")
    assert again.status == "accepted"


def test_reset_drops_the_pin_and_the_next_accepted_batch_pins_again(
    spec_without_columns: tuple[Path, Pipeline], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, pipe = spec_without_columns
    pipe.drop("m1.parquet", flights())

    assert main(["schema-pin", str(spec), "--reset"]) == 0
    out = capsys.readouterr().out
    assert "pin dropped: 3 change(s)" in out and "  - distance (was int)\n" in out
    assert main(["status", str(spec)]) == 0
    assert "not pinned yet" in capsys.readouterr().out

    # Not re-pinned from the oldest accepted batch: the next batch's types are the new schema.
    batch, status, _ = pipe.drop("m2.parquet", flights(start=6).astype({"distance": str}))
    assert status == "accepted"
    pin = read_pin(pipe.store)
    assert pin is not None and pin.batch_id == batch and pin.types["distance"] == "string"


def test_repin_from_an_unknown_batch_names_the_batches(
    spec_without_columns: tuple[Path, Pipeline], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, pipe = spec_without_columns
    first, _, _ = pipe.drop("m1.parquet", flights())
    assert main(["schema-pin", str(spec), "--from-batch", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no batch 'nope'" in err and first in err
