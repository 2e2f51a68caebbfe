"""The fault-injection suite reuses the integration fixtures (a trained-ready flights project)."""

from tests.integration.conftest import flights_project  # noqa: F401 (fixture)
