"""Fixtures of the Airflow-layer tests."""

from tests.smtp_server import smtp_server  # noqa: F401 (fixture: a real SMTP server)
