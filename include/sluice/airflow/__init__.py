"""The only layer that imports Airflow: renders plans into DAGs and runs steps as tasks."""
