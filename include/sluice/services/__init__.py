"""Thin clients over the real systems (filesystem, GX, Spark, MLflow, processes)."""
