"""The fault-injection suite reuses the integration fixtures (a trained-ready flights project)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sluice.services.storage import PipelineStore
from tests.conftest import Project
from tests.integration.conftest import flights_project  # noqa: F401 (fixture)
from tests.smtp_server import smtp_server  # noqa: F401 (fixture)

if TYPE_CHECKING:
    from sluice.spec.loader import LoadedSpec


def accepted_batch(project: Project, sample: int = 2000) -> tuple[Path, LoadedSpec, PipelineStore, str]:
    """Drop month 1 of the demo data, land and validate it in this process.

    Returns:
        The spec file, the loaded spec, the pipeline's storage and the accepted batch id.
    """
    from demo.producer import drop_month
    from sluice.spec.loader import load_spec
    from sluice.steps.ingest import land_new_files
    from sluice.steps.validate import validate_batch

    spec = project.dags / "flights_delay.pipeline.yaml"
    loaded = load_spec(spec)
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    drop_month(project.landing, 1, sample=sample)
    (batch,) = land_new_files(str(project.landing / "*.parquet"), store, "ingest-1").new
    assert validate_batch(store, batch, loaded.spec.validation, "parquet").status == "accepted"
    return spec, loaded, store, batch
