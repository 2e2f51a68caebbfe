"""The ``deploy`` task of the kubernetes target: a KubernetesPodOperator that runs the deployer.

Why a thin operator around the KubernetesPodOperator instead of the operator itself in the
DAG: importing ``airflow.providers.cncf.kubernetes.operators.pod`` imports the
``kubernetes`` and ``kubernetes_asyncio`` clients, and the DAG file is parsed every few
seconds under the rule that it imports nothing heavy. :class:`DeployPodOperator` carries
only plain settings at parse time. When the task runs, it builds an ordinary, unmodified
``KubernetesPodOperator`` (deferrable, same task id) and hands it ``execute``; when the
trigger fires, Airflow resumes *this* task with ``trigger_reentry``, which it hands on in
the same way. Everything the pod operator does (pod creation, deferral to the triggerer,
log streaming, cleanup, failure on a non-zero exit) is the provider's own code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from sluice.services import kubernetes as k8s
from sluice.spec.models import KubernetesDeployment

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator


class DeployPodOperator(BaseOperator):
    """Run ``sluice deployer`` in the project image through a deferrable KubernetesPodOperator.

    Args:
        pipeline: Pipeline (registered model) name.
        settings: The spec's ``deployment.kubernetes`` as a JSON-able dict.
        version: Model version to deploy (templated; usually from the promote XCom).
        previous_version: Champion before the promotion, '' if none (templated).
        airflow_run_id: Run id recorded on the objects (templated).
        poll_interval: Seconds between the trigger's pod status checks.
    """

    template_fields = ("version", "previous_version", "airflow_run_id")
    ui_color = "#326ce5"

    def __init__(
        self,
        *,
        pipeline: str,
        settings: dict[str, Any],
        version: str,
        previous_version: str,
        airflow_run_id: str = "{{ run_id }}",
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.settings = settings
        self.version = version
        self.previous_version = previous_version
        self.airflow_run_id = airflow_run_id
        self.poll_interval = poll_interval

    @property
    def config(self) -> KubernetesDeployment:
        """The validated kubernetes settings."""
        return KubernetesDeployment.model_validate(self.settings)

    def pod_operator(self) -> KubernetesPodOperator:
        """The KubernetesPodOperator this task runs (built from the rendered fields)."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        cfg = self.config
        version, run_id = str(self.version), str(self.airflow_run_id)
        pod = k8s.deployer_pod(self.pipeline, cfg, version, str(self.previous_version or ""), run_id)
        labels = {
            **pod["metadata"]["labels"],
            k8s.LABEL_VERSION: k8s.label_value(version),
            k8s.LABEL_RUN: k8s.label_value(run_id),
        }
        return KubernetesPodOperator(
            task_id=self.task_id,
            kubernetes_conn_id=None if cfg.in_cluster else cfg.conn_id,
            in_cluster=cfg.in_cluster,
            namespace=cfg.namespace,
            name=f"{k8s.object_name(self.pipeline)}-deploy",
            pod_template_dict=pod,
            labels=labels,
            annotations={k8s.ANNOTATION_RUN: run_id},
            deferrable=True,
            poll_interval=self.poll_interval,
            get_logs=True,
            do_xcom_push=False,
            on_finish_action="delete_pod",
            log_events_on_failure=True,
            startup_timeout_seconds=300,
        )

    def execute(self, context: Any) -> Any:
        """Create the deployer pod and defer until it ends (the pod operator's own logic)."""
        self.log.info("deploying %s v%s with a deployer pod", self.pipeline, self.version)
        return self.pod_operator().execute(context)

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        """Resume after the trigger: stream the pod's log, check its exit, delete it."""
        return self.pod_operator().trigger_reentry(context, event)
