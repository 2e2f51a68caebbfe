"""The JSON Schema editors and CI use agrees with the loader on the demo spec."""

from __future__ import annotations

import json

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from sluice.spec.schema import json_schema


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_schema_is_draft_2020_12_and_json_serialisable():
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "sluice pipeline spec"
    assert json.loads(json.dumps(schema)) == schema


def test_schema_validates_the_demo_spec(validator, demo_data):
    errors = [e.message for e in validator.iter_errors(demo_data)]
    assert errors == []


def test_schema_rejects_an_unknown_key(validator, demo_data):
    demo_data["source"]["patern"] = "*.parquet"
    with pytest.raises(jsonschema.ValidationError, match="patern"):
        validator.validate(demo_data)


def test_schema_rejects_an_unknown_top_level_key(validator, demo_data):
    demo_data["retrain_onn"] = ["new_data"]
    assert not validator.is_valid(demo_data)


def test_schema_rejects_an_unknown_expectation_type(validator, demo_data):
    demo_data["validation"]["expectations"][1]["type"] = "not_nul"
    assert not validator.is_valid(demo_data)


def test_schema_requires_the_core_sections(validator, demo_data):
    del demo_data["training"]
    assert not validator.is_valid(demo_data)
