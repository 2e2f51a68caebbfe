"""Operators sluice adds to Airflow (approval with evidence, the Kubernetes deployer pod)."""
