"""The embedded Airflow: home, launcher, supervisor, preload, Celery settings, connections."""
