"""Where the Spark driver listens (``services/spark.driver_defaults``)."""

from __future__ import annotations

import pytest

from sluice.services.spark import LOOPBACK_DRIVER, driver_defaults


@pytest.mark.parametrize(
    "master",
    [
        None,
        "local[*]",
        "local[2]",
        "spark://127.0.0.1:7077",
        "spark://localhost:7077",
        "spark://127.0.0.1:7077,127.0.0.1:7078",
    ],
)
def test_a_driver_with_every_executor_on_this_machine_listens_on_loopback(master: str | None) -> None:
    assert driver_defaults(master) == LOOPBACK_DRIVER


@pytest.mark.parametrize(
    "master", ["spark://spark-master:7077", "spark://10.0.3.4:7077", "spark://a.example:7077,b.example:7077"]
)
def test_a_cluster_on_other_hosts_can_call_the_driver_back(master: str) -> None:
    # Pinned to 127.0.0.1, executors on another host would call themselves and the job would hang.
    assert driver_defaults(master) == {}
