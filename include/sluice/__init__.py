"""sluice: declarative ML pipelines on Apache Airflow 3."""
