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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from sluice.services import kube_manifests as km
from sluice.spec.models import KUBERNETES, KubernetesDeployment

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    from sluice.spec.loader import LoadedSpec
    from sluice.steps.records import PromoteResult


def cluster_connector(loaded: LoadedSpec) -> Callable[[], ApiClient] | None:
    """How code running in Airflow reaches the spec's cluster: the deploy task's own connection.

    The deploy task reaches the cluster through ``deployment.kubernetes.conn_id`` (or the
    worker's service account when ``in_cluster``), so whatever asks the cluster from inside
    Airflow (the deploy alert) must use the same, not the worker's ``$KUBECONFIG``. None for
    a spec whose target is not kubernetes (its target needs no client).
    """
    cfg = KUBERNETES.chosen(loaded.spec.deployment)
    if cfg is None:
        return None

    def connect() -> ApiClient:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from sluice.steps.targets import default_connect

        if cfg.in_cluster:
            return KubernetesHook(conn_id=None, in_cluster=True).get_conn()
        hook = KubernetesHook(conn_id=cfg.conn_id)
        given = {key.removeprefix("extra__kubernetes__") for key, value in hook.conn_extras.items() if value}
        if given & {"kube_config_path", "kube_config", "in_cluster"}:
            return hook.get_conn()
        # A connection that names no cluster (or the missing default one) means "the
        # default": the hook would read the kubeconfig path the client fixed at import;
        # read $KUBECONFIG now, as the deployer and `sluice status` do.
        return default_connect()

    return connect


class DeployPodOperator(BaseOperator):
    """Run ``sluice deployer`` in the project image through a deferrable KubernetesPodOperator.

    Args:
        pipeline: Pipeline (registered model) name.
        settings: The spec's ``deployment.kubernetes`` as a JSON-able dict.
        version_from: The task whose result (a :class:`~sluice.steps.records.PromoteResult`)
            names the version to deploy and the champion before it; read when the task runs.
        airflow_run_id: Run id recorded on the objects (templated).
        poll_interval: Seconds between the trigger's pod status checks.
        spec_path: The spec, read when the task runs for the prediction log's storage root
            and id column (:func:`sluice.services.kube_manifests.serve_args`); '' for none.
    """

    template_fields = ("airflow_run_id",)
    ui_color = "#326ce5"

    def __init__(
        self,
        *,
        pipeline: str,
        settings: dict[str, Any],
        version_from: str,
        airflow_run_id: str = "{{ run_id }}",
        poll_interval: float = 2.0,
        spec_path: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.settings = settings
        self.version_from = version_from
        self.airflow_run_id = airflow_run_id
        self.poll_interval = poll_interval
        self.spec_path = spec_path

    @property
    def config(self) -> KubernetesDeployment:
        """The validated kubernetes settings."""
        return KubernetesDeployment.model_validate(self.settings)

    def promoted(self, context: Any) -> PromoteResult:
        """The promotion to deploy: the ``version_from`` task's result in this run.

        Raises:
            AirflowFailException: That task left no result (it was skipped or cleared).
            RecordError: Its result is not a promotion record (nothing is deployed on a guess).
        """
        from airflow.sdk.exceptions import AirflowFailException

        from sluice.steps.records import PromoteResult, decode

        value = context["ti"].xcom_pull(task_ids=self.version_from)
        if value is None:
            raise AirflowFailException(f"task {self.version_from} left no PromoteResult in this run: nothing to deploy")
        return decode(PromoteResult, value)

    def serve_args(self) -> list[str]:
        """The model server's prediction-log arguments, from the spec's storage root and id column."""
        if not self.spec_path:
            return []
        from sluice.spec.loader import load_spec

        spec = load_spec(self.spec_path).spec
        return km.serve_args(str(spec.storage.root), spec.source.id_column)

    def pod_operator(self, promoted: PromoteResult) -> KubernetesPodOperator:
        """The KubernetesPodOperator this task runs: the deployer pod for ``promoted``'s version."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        cfg = self.config
        version, run_id = promoted.version, str(self.airflow_run_id)
        pod = km.deployer_pod(self.pipeline, cfg, version, promoted.previous or "", run_id, self.serve_args())
        labels = {
            **pod["metadata"]["labels"],
            km.LABEL_VERSION: km.label_value(version),
            km.LABEL_RUN: km.label_value(run_id),
        }
        return KubernetesPodOperator(
            task_id=self.task_id,
            kubernetes_conn_id=None if cfg.in_cluster else cfg.conn_id,
            in_cluster=cfg.in_cluster,
            namespace=cfg.namespace,
            name=f"{km.object_name(self.pipeline)}-deploy",
            pod_template_dict=pod,
            labels=labels,
            annotations={km.ANNOTATION_RUN: run_id},
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
        promoted = self.promoted(context)
        self.log.info("deploying %s v%s with a deployer pod", self.pipeline, promoted.version)
        return self.pod_operator(promoted).execute(context)

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        """Resume after the trigger: stream the pod's log, check its exit, delete it."""
        return self.pod_operator(self.promoted(context)).trigger_reentry(context, event)
