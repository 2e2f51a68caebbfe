"""The production kit: the production shape started, checked and stopped from one environment file.

- :mod:`sluice.production.commands`: the exact command and environment of each part (PostgreSQL,
  Redis, moto's S3, MLflow, Spark, Airflow on Celery, Flower), shared with the test harness
  (``include/demo/production_stack.py``);
- :mod:`sluice.production.envfile`: the environment template (``sluice production init``) and
  its reading, checked, into a :class:`~sluice.production.envfile.Kit`;
- :mod:`sluice.production.parts`: each part of a kit: how it is prepared, started and seen ready;
- :mod:`sluice.production.supervise`: ``up``, ``down`` and ``status`` over pid files in the
  kit's state folder;
- :mod:`sluice.production.moto_journal`: moto's S3 server with a journal that survives a kill.

Nothing here imports Airflow: every Airflow part is a separate ``python -m airflow`` process.
"""
