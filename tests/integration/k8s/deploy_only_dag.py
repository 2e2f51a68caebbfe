"""Test DAG: a stand-in ``promote`` task, then sluice's real ``deploy`` task of the kubernetes target.

Copied into the test's DAGs folder (dag.test() re-parses it). The deploy task is exactly
what the renderer builds from the plan of ``SLUICE_TEST_K8S_SPEC``; only its upstream is a
stand-in, which moves ``@champion`` the way the promote step does and returns the same XCom.
"""

import json
import os
from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from sluice.airflow.render import RENDERERS, START_DATE
from sluice.plan import build_plan
from sluice.spec.loader import load_spec


def promote() -> dict:
    from sluice.services import tracking

    result = json.loads(os.environ["SLUICE_TEST_PROMOTE"])
    client = tracking.configure_uri(os.environ["MLFLOW_TRACKING_URI"])
    client.set_registered_model_alias(os.environ["SLUICE_TEST_MODEL"], "champion", result["version"])
    return result


if os.environ.get("SLUICE_TEST_K8S_SPEC"):
    plan = build_plan(load_spec(os.environ["SLUICE_TEST_K8S_SPEC"]))
    (step,) = [s for d in plan.dags for s in d.steps if s.kind == "deploy_kubernetes"]
    with DAG("k8s_deploy_only", schedule=None, start_date=START_DATE, catchup=False) as dag:
        up = PythonOperator(task_id="promote", python_callable=promote)
        deploy = RENDERERS[step.kind](step, plan)
        deploy.retry_delay = timedelta(seconds=1)  # the only change: no 20 s wait before the retry
        up >> deploy
