"""Celery settings for sluice's workers: Airflow's defaults, plus the task libraries imported once.

A Celery worker forks its pool processes from its main process, and each Airflow task is
forked from a pool process (``supervise``). Celery imports the modules named in ``imports``
in the main process before the pool starts (``loader.import_default_modules``, right after
Airflow's own ``import_modules`` preload of its operators), so listing
:mod:`sluice.airflow.runtime.preload` there gives every task on the worker MLflow, scikit-learn,
skops, pandas, Evidently and Great Expectations already imported, copy-on-write: the same
saving the scheduler's forkserver gives LocalExecutor tasks.

Select it with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=sluice.airflow.runtime.celery_config.CELERY_CONFIG``
(the production compose file and the test stack do). Airflow uses this dict as the whole Celery
configuration when the option is set, so it starts from Airflow's ``DEFAULT_CELERY_CONFIG``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

#: Airflow's Celery configuration with sluice's preload module in ``imports``.
CELERY_CONFIG: dict[str, Any] = {
    **DEFAULT_CELERY_CONFIG,
    "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), "sluice.airflow.runtime.preload"),
}
