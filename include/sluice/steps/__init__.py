"""Pure step logic: plain typed functions over services; no Airflow import."""
