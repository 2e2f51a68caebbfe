"""Views the sluice plugin mounts on Airflow's API server (the reports app)."""
