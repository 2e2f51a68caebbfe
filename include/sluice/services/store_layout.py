"""Where each piece of a pipeline's state lives: the key layout, and nothing else.

Pure functions of names (no I/O), so the renderer, the CLI and the plugin can name a key
without opening a store. Layout under ``<storage.root>/<pipeline>/``::

    batches/<batch_id>/source.<ext>      the file as it landed (raw zone, immutable)
                      /batch.json        status and lineage of the batch (its commit marker)
                      /validation.json   sluice's summary of the checks
                      /gx_result.json    the Great Expectations result, as GX wrote it
                      /clean.parquet     accepted rows (what training reads)
                      /quarantine.parquet rows that failed a row-level check, with the reasons
    features/<key>/features.parquet      output of a ``scope: history`` feature job (meta.json: its
                                         commit marker); with ``scope: batch`` only meta.json, which
                                         names the per-batch tables below
    feature_cache/<batch_id>/<key>/features.parquet
                                         one batch's features (``scope: batch``), keyed by the batch's
                                         content, the job and its inputs (meta.json: commit marker)
    runs/<airflow run id>/...            per train run: trigger.json, holdout, decision record
    monitor/<airflow run id>/            per monitor run: report.html (Evidently), drift.json
    deploy/current.json                  what is served where (local target)
    predictions/log/date=YYYY-MM-DD/hour=HH/<uuid>.parquet
                                         the model server's prediction log (one row per scored row)
    schema/pinned.json                   the schema batches are held to when the spec declares no
                                         source.columns (the first accepted batch's; sluice schema-pin)
    landing/archived.json                archived landing files still watched for changes
    landing/refused.json                 inputs refused (folders, symlinks, hidden names), once each
"""

from __future__ import annotations

import re

#: The file whose presence commits a batch folder.
BATCH_RECORD = "batch.json"
#: The file whose presence commits a feature table folder.
FEATURES_META = "meta.json"


def safe_name(text: str) -> str:
    """Make an Airflow run id (with ':' and '+') safe as one key segment."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def join(*parts: str) -> str:
    """Join key segments with ``/`` (empty segments dropped)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class StoreLayout:
    """The keys of a pipeline's state (see the module docstring); every method is pure."""

    @staticmethod
    def batch(batch_id: str, name: str = "") -> str:
        """Key of a batch's folder, or of ``name`` inside it."""
        return join("batches", batch_id, name)

    @staticmethod
    def features(key: str, name: str = "") -> str:
        """Key of a feature table's folder, or of ``name`` inside it."""
        return join("features", key, name)

    @staticmethod
    def feature_cache(batch_id: str, key: str = "", name: str = "") -> str:
        """Key of a batch's cached feature tables, of the one with content key ``key``, or of ``name`` in it."""
        return join("feature_cache", batch_id, key, name)

    @staticmethod
    def run(run_id: str, name: str = "") -> str:
        """Key of a train run's folder (any Airflow run id), or of ``name`` inside it."""
        return join("runs", safe_name(run_id), name)

    @staticmethod
    def monitor(run_id: str, name: str = "") -> str:
        """Key of a monitor run's folder, or of ``name`` inside it."""
        return join("monitor", safe_name(run_id), name)

    @staticmethod
    def landing(name: str = "") -> str:
        """Key of the landing bookkeeping (archived files watched, inputs refused)."""
        return join("landing", name)

    @staticmethod
    def schema(name: str = "") -> str:
        """Key of the pipeline's schema records (the pinned schema), or of ``name`` inside."""
        return join("schema", name)

    @staticmethod
    def deploy(name: str = "") -> str:
        """Key of the deploy records' folder, or of ``name`` inside it."""
        return join("deploy", name)

    @staticmethod
    def predictions(name: str = "") -> str:
        """Key of the predictions folder (the model server's log is ``log/``), or of ``name`` inside it."""
        return join("predictions", name)
