"""JSON Schema of the spec, for editors and CI."""

from __future__ import annotations

from typing import Any

from sluice.spec.models import PipelineSpec


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a pipeline spec."""
    schema = PipelineSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sluice pipeline spec"
    return schema
