"""The ``deployment.kubernetes`` section: what it needs and what it refuses, with lines and hints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.kube import kubernetes_spec

from sluice.spec.errors import SpecError
from sluice.spec.loader import load_spec


def error_text(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


def test_a_complete_kubernetes_section_loads_with_defaults(project_env: Path, write_spec: Callable[..., Path]) -> None:
    k8s = load_spec(write_spec(kubernetes_spec())).spec.deployment.kubernetes
    assert k8s is not None
    assert (k8s.conn_id, k8s.in_cluster, k8s.service_account, k8s.replicas) == (
        "kubernetes_default",
        False,
        "sluice-deployer",
        2,
    )
    assert k8s.resources.requests.cpu == "250m" and k8s.resources.limits.memory == "1Gi"


def test_target_kubernetes_without_its_section_names_the_fields(
    project_env: Path, write_spec: Callable[..., Path], demo_data: dict[str, Any]
) -> None:
    demo_data["deployment"] = {"target": "kubernetes"}
    text = error_text(write_spec(demo_data))
    assert "target 'kubernetes' needs a 'kubernetes' section" in text
    assert "namespace, image, serving_image and mlflow_tracking_uri" in text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"namespace": "ML_Serving"}, "deployment.kubernetes.namespace"),
        ({"port": 80}, "greater than or equal to 1024"),
        ({"labels": {"sluice.io/pipeline": "x"}}, "is set by sluice"),
        ({"labels": {"team": "data eng"}}, "not a valid Kubernetes label value"),
        ({"resources": {"requests": {"cpu": "a lot", "memory": "1Gi"}}}, "deployment.kubernetes.resources"),
        ({"mlflow_tracking_uri": "mlflow.svc"}, "mlflow_tracking_uri"),
        ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
    ],
)
def test_bad_kubernetes_settings_are_reported_with_their_line(
    project_env: Path, write_spec: Callable[..., Path], settings: dict[str, Any], message: str
) -> None:
    path = write_spec(kubernetes_spec(**settings))
    text = error_text(path)
    assert message in text
    assert f"{path}:" in text


def test_a_misspelt_kubernetes_key_gets_a_hint(project_env: Path, write_spec: Callable[..., Path]) -> None:
    spec = kubernetes_spec()
    spec["deployment"]["kubernetes"]["servng_image"] = spec["deployment"]["kubernetes"].pop("serving_image")
    text = error_text(write_spec(spec))
    assert "did you mean 'serving_image'?" in text
