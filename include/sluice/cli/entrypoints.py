"""The entrypoints of containers: the Kubernetes deployer pod and the model server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from sluice.cli.common import (
    _model_version,
    _pipeline_name,
    _previous_version,
)


class DeployerTerminated(Exception):
    """SIGTERM reached the deployer; raised where it waits so the rollback runs."""


def cmd_deployer(args: argparse.Namespace) -> int:
    """The deployer pod's entrypoint: roll a model version out to Kubernetes."""
    import signal

    from sluice.services.kube_manifests import serve_args as serve_args_of
    from sluice.spec.models import KubernetesDeployment
    from sluice.steps.deploy_kubernetes import KubernetesDeployFailed, deploy_kubernetes
    from sluice.steps.records import encode

    cfg = KubernetesDeployment.model_validate_json(args.settings)

    def log(line: str) -> None:
        print(f"sluice deployer: {line}", flush=True)

    def terminated(signum: int, frame: object) -> None:
        # The pod is being deleted (task killed or cleared): stop waiting and roll back.
        raise DeployerTerminated(f"received signal {signum} during the deploy")

    signal.signal(signal.SIGTERM, terminated)
    try:
        serve_args = serve_args_of(args.storage_root or "", args.id_column or None)
        result = deploy_kubernetes(
            args.pipeline, cfg, args.version, args.previous_version or None, args.run_id, log=log, serve_args=serve_args
        )
    except KubernetesDeployFailed as exc:
        log(f"FAILED: {exc}")
        return 1
    log(f"result: {json.dumps(encode(result))}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the model server (the serving image's entrypoint)."""
    from sluice.services.serving import serve

    info = {"pipeline": args.pipeline or "", "version": args.version or ""}
    ready = Path(args.ready_file) if args.ready_file else None
    serve(args.model_uri, args.host, args.port, ready, info, args.storage_root or None, args.id_column or None)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The deployer pod's and the model server's commands."""
    p = sub.add_parser("deployer", help="deploy a model version to Kubernetes (the deployer pod's entrypoint)")
    p.add_argument("--pipeline", required=True, type=_pipeline_name)
    p.add_argument("--version", required=True, type=_model_version, help="registered model version to serve")
    p.add_argument(
        "--previous-version", default="", type=_previous_version, help="champion before this promotion ('' if none)"
    )
    p.add_argument("--run-id", required=True, help="Airflow run id, recorded on the objects")
    p.add_argument("--settings", required=True, help="the spec's deployment.kubernetes as JSON")
    p.add_argument("--storage-root", help="the spec's storage.root: an s3:// root is the model server's prediction log")
    p.add_argument("--id-column", help="the spec's source.id_column, logged with each prediction")
    p.set_defaults(func=cmd_deployer)
    p = sub.add_parser("serve", help="serve a registered model version (model server entrypoint)")
    p.add_argument("--model-uri", required=True)
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server in a container listens on all interfaces
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--ready-file")
    p.add_argument("--pipeline")
    p.add_argument("--version")
    p.add_argument("--storage-root", help="the spec's storage.root: log every prediction under <root>/<pipeline>/")
    p.add_argument("--id-column", help="the spec's source.id_column, logged with each prediction")
    p.set_defaults(func=cmd_serve)
