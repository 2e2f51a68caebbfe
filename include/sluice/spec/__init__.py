"""The pipeline spec: models, loader and JSON Schema."""

from sluice.spec.errors import SpecError, SpecIssue
from sluice.spec.loader import LoadedSpec, LoadReport, load_folder, load_spec
from sluice.spec.models import PipelineSpec

__all__ = ["LoadReport", "LoadedSpec", "PipelineSpec", "SpecError", "SpecIssue", "load_folder", "load_spec"]
