"""The expectation registry: one class per type gives the schema entry, the lint hint, the Great
Expectations expectation and the quarantine rule; an unknown type is never a silent fallback.

Before: the GX adapter's if-chain ran a row-count check for any type it did not know.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import pytest
from pydantic import Field

from sluice.spec.errors import SpecError
from sluice.spec.expectations import (
    REGISTRY,
    ColumnExpectation,
    ExpectationSpec,
    NotNull,
    UnknownExpectation,
    lookup,
    type_names,
)
from sluice.spec.loader import load_spec
from sluice.spec.models import PipelineSpec

#: One entry per registered type, checked on FRAME; a new type must add its own here.
SAMPLES: dict[str, dict[str, Any]] = {
    "not_null": {"column": "dep_delay"},
    "between": {"column": "dep_delay", "min": 0, "max": 100},
    "in_set": {"column": "origin", "values": ["EWR", "JFK"]},
    "matches_regex": {"column": "origin", "regex": "^[A-Z]{3}$"},
    "column_exists": {"column": "no_such_column"},
    "row_count_between": {"min": 10},
}
FRAME = pd.DataFrame({"dep_delay": [5.0, None, 500.0], "origin": ["EWR", "lga", "JFK"]})
#: The rows of FRAME each row-level sample quarantines (``between`` does not check nulls);
#: the batch-level samples fail on the whole table.
FAILING_ROWS = {"not_null": [1], "between": [2], "in_set": [1], "matches_regex": [1]}


def _entry(name: str) -> ExpectationSpec:
    return lookup(name).model_validate({"type": name, **SAMPLES[name]})


def test_every_registered_type_has_a_sample_here() -> None:
    assert set(SAMPLES) == set(REGISTRY) == set(type_names())


def test_every_registered_type_is_in_the_spec_schema_editors_use() -> None:
    schema = PipelineSpec.model_json_schema()
    validation = schema["$defs"]["Validation"]["properties"]["expectations"]["items"]
    assert set(validation["discriminator"]["mapping"]) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_type_runs_as_its_gx_expectation_and_quarantines_by_its_rule(name: str) -> None:
    from sluice.services.gx import run_expectations

    entry = _entry(name)
    ((check,), _) = run_expectations(FRAME, [entry])
    assert check.check == name and not check.success
    assert check.row_level is lookup(name).row_level
    if check.row_level:
        assert [int(i) for i in check.unexpected_index] == FAILING_ROWS[name]  # the rows quarantined
    else:
        assert check.unexpected_index == []  # the whole batch is rejected instead


def test_an_unknown_type_is_a_spec_error_naming_the_line_and_every_type(
    write_spec: Callable[..., Path], demo_data: dict[str, Any], project_env: Path
) -> None:
    demo_data["validation"]["expectations"].append({"type": "not_nul", "column": "dep_delay"})
    path = write_spec(demo_data)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    (issue,) = err.value.issues
    assert issue.line == _line_of(path, "type: not_nul")
    assert "unknown type 'not_nul'" in issue.message and "did you mean 'not_null'?" in (issue.hint or "")

    del demo_data["validation"]["expectations"][-1]["type"]
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(demo_data))
    (issue,) = err.value.issues
    assert all(name in (issue.hint or "") for name in REGISTRY)


def test_the_gx_adapter_refuses_a_type_nobody_registered() -> None:
    from sluice.services.gx import run_expectations

    stray = NotNull.model_construct(type="no_such_check", column="dep_delay")
    with pytest.raises(UnknownExpectation, match="no_such_check"):
        run_expectations(FRAME, [stray])


@pytest.fixture
def unique_type() -> Iterator[type[ExpectationSpec]]:
    """A type declared the way a new one would be (removed again afterwards)."""

    class Unique(ColumnExpectation):
        """Column values must be unique (row-level)."""

        gx_name: ClassVar[str] = "ExpectColumnValuesToBeUnique"
        row_level: ClassVar[bool] = True
        type: Literal["unique"] = Field(description="Expectation type.")

        def gx_kwargs(self) -> dict[str, Any]:
            return {"column": self.column}

    try:
        yield Unique
    finally:
        REGISTRY.pop("unique", None)


def test_one_class_declares_a_new_type_for_the_adapter_and_the_hints(unique_type: type[ExpectationSpec]) -> None:
    from sluice.services.gx import run_expectations

    assert "unique" in type_names()
    frame = pd.DataFrame({"origin": ["EWR", "EWR", "JFK"]})
    ((check,), _) = run_expectations(frame, [unique_type.model_validate({"type": "unique", "column": "origin"})])
    assert not check.success and check.row_level and sorted(int(i) for i in check.unexpected_index) == [0, 1]


def test_a_type_declared_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="declared twice"):

        class Again(ColumnExpectation):
            gx_name: ClassVar[str] = "ExpectColumnValuesToNotBeNull"
            row_level: ClassVar[bool] = True
            type: Literal["not_null"]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if re.search(re.escape(text) + "$", line))
