"""Spark settings (``features.conf``) checked the way Spark parses them, without starting a JVM.

Spark reads a setting only when a session starts, in the feature task: ``spark.driver.memory:
lots`` would pass the spec and fail the train run. The well-known settings are typed here as
Spark types them (``ConfigBuilder``: ``bytesConf``, ``timeConf``, ``intConf``, ``booleanConf``,
``doubleConf``); a setting not listed is passed on as written. Every ``spark.*.enabled`` setting
is a boolean, as in Spark's own naming.
"""

from __future__ import annotations

import re

#: Spark's byte strings (``JavaUtils.byteStringAs``, with ``ConfigHelpers.byteFromString``'s
#: leading minus): a whole number and an optional unit, case-insensitive.
SIZE = re.compile(r"-?[0-9]+(b|k|kb|m|mb|g|gb|t|tb|p|pb)?", re.I)
#: ``spark.driver.memory`` becomes the driver JVM's ``-Xmx`` when the session starts, which takes
#: one letter (k, m, g, t) and reads a bare number as bytes.
JVM_SIZE = re.compile(r"[0-9]+[kmgt]", re.I)
#: Spark's time strings (``JavaUtils.timeStringAs``).
TIME = re.compile(r"-?[0-9]+(us|ms|s|m|min|h|d)?", re.I)
INT = re.compile(r"[-+]?[0-9]+")
BOOLEAN = re.compile(r"true|false", re.I)
DOUBLE = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")

#: Kind -> (pattern, what Spark expects, an example).
KINDS: dict[str, tuple[re.Pattern[str], str, str]] = {
    "jvm_size": (JVM_SIZE, "a whole number with a unit k, m, g or t (the driver JVM's -Xmx)", "2g"),
    "size": (SIZE, "a whole number of bytes with an optional unit (b, k, m, g, t, p)", "512m"),
    "time": (TIME, "a whole number with an optional unit (us, ms, s, m, min, h, d)", "120s"),
    "int": (INT, "a whole number", "4"),
    "boolean": (BOOLEAN, "true or false", "true"),
    "double": (DOUBLE, "a number", "0.6"),
}

#: Well-known settings by kind (Spark 4 configuration reference).
KNOWN: dict[str, str] = {
    "spark.driver.memory": "jvm_size",
    **dict.fromkeys(
        (
            "spark.executor.memory",
            "spark.executor.memoryOverhead",
            "spark.driver.memoryOverhead",
            "spark.driver.maxResultSize",
            "spark.executor.pyspark.memory",
            "spark.memory.offHeap.size",
            "spark.sql.files.maxPartitionBytes",
            "spark.sql.files.openCostInBytes",
            "spark.sql.autoBroadcastJoinThreshold",
            "spark.sql.adaptive.advisoryPartitionSizeInBytes",
            "spark.sql.adaptive.autoBroadcastJoinThreshold",
            "spark.kryoserializer.buffer",
            "spark.kryoserializer.buffer.max",
            "spark.reducer.maxSizeInFlight",
            "spark.shuffle.file.buffer",
            "spark.broadcast.blockSize",
            "spark.files.maxPartitionBytes",
        ),
        "size",
    ),
    **dict.fromkeys(
        (
            "spark.network.timeout",
            "spark.executor.heartbeatInterval",
            "spark.sql.broadcastTimeout",
            "spark.locality.wait",
            "spark.rpc.askTimeout",
            "spark.rpc.lookupTimeout",
            "spark.files.fetchTimeout",
            "spark.dynamicAllocation.executorIdleTimeout",
            "spark.dynamicAllocation.cachedExecutorIdleTimeout",
            "spark.dynamicAllocation.schedulerBacklogTimeout",
            "spark.scheduler.revive.interval",
            "spark.speculation.interval",
        ),
        "time",
    ),
    **dict.fromkeys(
        (
            "spark.executor.cores",
            "spark.driver.cores",
            "spark.executor.instances",
            "spark.cores.max",
            "spark.task.cpus",
            "spark.task.maxFailures",
            "spark.default.parallelism",
            "spark.sql.shuffle.partitions",
            "spark.sql.adaptive.coalescePartitions.initialPartitionNum",
            "spark.sql.files.maxRecordsPerFile",
            "spark.sql.execution.arrow.maxRecordsPerBatch",
            "spark.dynamicAllocation.minExecutors",
            "spark.dynamicAllocation.maxExecutors",
            "spark.dynamicAllocation.initialExecutors",
            "spark.rpc.message.maxSize",
            "spark.port.maxRetries",
            "spark.ui.port",
            "spark.driver.port",
            "spark.blockManager.port",
        ),
        "int",
    ),
    **dict.fromkeys(
        (
            "spark.speculation",
            "spark.sql.caseSensitive",
            "spark.python.worker.reuse",
            "spark.rdd.compress",
            "spark.shuffle.compress",
            "spark.shuffle.spill.compress",
            "spark.broadcast.compress",
            "spark.checkpoint.compress",
        ),
        "boolean",
    ),
    **dict.fromkeys(
        (
            "spark.memory.fraction",
            "spark.memory.storageFraction",
            "spark.executor.memoryOverheadFactor",
            "spark.driver.memoryOverheadFactor",
            "spark.speculation.multiplier",
            "spark.speculation.quantile",
            "spark.dynamicAllocation.executorAllocationRatio",
        ),
        "double",
    ),
}

#: Setting families whose names the user chooses (environment, labels, Hadoop settings):
#: their ``.enabled`` is not a Spark boolean.
_FREE_FORM = ("spark.hadoop.", "spark.executorEnv.", "spark.yarn.appMasterEnv.", "spark.kubernetes.driverEnv.")


def kind_of(key: str) -> str | None:
    """How Spark types setting ``key``, or None when it is not checked."""
    if key in KNOWN:
        return KNOWN[key]
    free = key.startswith(_FREE_FORM) or ".label." in key or ".annotation." in key
    if key.startswith("spark.") and key.endswith(".enabled") and not free:
        return "boolean"
    return None


def as_text(value: object) -> object:
    """A setting's value as Spark takes it: YAML's ``true`` is ``"true"``, ``4`` is ``"4"``.

    Other values (lists, mappings, None) are returned as they are, for the model to refuse.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def conf_problem(key: str, value: str) -> tuple[str, str] | None:
    """Why Spark would refuse ``value`` for ``key``, as (problem, fix), or None when it parses."""
    kind = kind_of(key)
    if kind is None:
        return None
    pattern, expected, example = KINDS[kind]
    if pattern.fullmatch(value.strip()):
        return None
    problem = f"{key} '{value}' is not {expected}"
    if kind == "jvm_size" and INT.fullmatch(value.strip()):
        problem = f"{key} '{value}' has no unit: the driver JVM would read it as {value} bytes"
    elif kind in ("size", "jvm_size") and re.fullmatch(r"[0-9]+\.[0-9]+[a-z]*", value.strip(), re.I):
        problem = f"{key} '{value}': Spark takes no fractions of a size"
    return problem, f"write e.g. {key}: {example}"
