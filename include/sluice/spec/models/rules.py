"""Rules several spec sections share: identifiers, seeds, cron, S3 locations, hosts, Kubernetes
quantities and images, "did you mean"."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.spec.base import rule

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"


#: Seeds reach numpy, whose seeds are unsigned 32-bit.
MAX_SEED = 2**32 - 1


#: Issue that brings object storage (s3://) for storage.root.
OBJECT_STORAGE_ISSUE = "issue 11"


def _did_you_mean(word: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


#: Airflow's cron aliases (``airflow.sdk.definitions.timetables._cron.CRON_PRESETS``), copied so
#: the spec layer never imports Airflow; a test checks they agree.
CRON_PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}


def cron_problem(expression: str) -> str | None:
    """Why Airflow would refuse ``expression`` as a cron schedule, or None if it is fine.

    Airflow maps its presets, then hands the expression to croniter (what
    ``CronTriggerTimetable.validate`` does); a date that never comes (``0 0 30 2 *``) passes
    that check but fails the scheduler later, so the next fire time is computed too.
    """
    from croniter import croniter

    resolved = CRON_PRESETS.get(expression.strip(), expression.strip())
    if not resolved or len(expression) > 200:
        return "empty or overlong cron expression"
    try:
        croniter(resolved, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception as exc:  # croniter raises several kinds (bad cron, bad date, value errors)
        return str(exc) or type(exc).__name__
    return None


CRON_HINT = "write 5 cron fields 'minute hour day month weekday' (e.g. '*/5 * * * *') or one of " + ", ".join(
    CRON_PRESETS
)


def check_cron(value: str | None, what: str, also: tuple[str, ...] = ()) -> str | None:
    """``value`` if it is a schedule Airflow accepts (a cron, a preset, or one of ``also``).

    The one cron check of every spec key that takes a schedule; ``None`` (the key unset)
    passes.

    Raises:
        PydanticCustomError: Naming ``what`` (the key), the problem and :data:`CRON_HINT`.
    """
    if value is None or value in also:
        return value
    problem = cron_problem(value)
    if problem:
        alternatives = "".join(f"'{a}' or " for a in also)
        raise rule(f"{what} '{value}' is not {alternatives}a valid cron: {problem}", CRON_HINT)
    return value


S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def split_s3(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of an ``s3://`` uri; the prefix has no leading or trailing '/'."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def s3_location_problem(uri: str) -> tuple[str, str] | None:
    """What makes ``s3://bucket/prefix`` unusable, as (problem, fix), or None when it is fine."""
    bucket, prefix = split_s3(uri)
    if not S3_BUCKET.match(bucket):
        return (
            f"'{uri}' does not name a valid S3 bucket ('{bucket}')",
            "write s3://bucket/prefix with a 3-63 character lower-case bucket name",
        )
    if "//" in prefix or any(c in prefix for c in "*?["):
        return f"'{uri}': the prefix must be a plain folder", "write s3://bucket/prefix; put wildcards in pattern"
    return None


class S3Reachable:
    """A location that is a local folder or an ``s3://`` prefix reached through an Airflow aws connection.

    Mixed into :class:`Source` (``uri``) and :class:`Storage` (``root``), which name the location
    and declare ``conn_id`` (declared here for type checkers only: a field here would come first
    in the models' field order, and so in the schema and the spec reference).
    """

    if TYPE_CHECKING:
        conn_id: str | None

    @property
    def location(self) -> str:
        """The folder or ``s3://`` uri."""
        raise NotImplementedError

    @property
    def is_s3(self) -> bool:
        """Whether the location is an S3 prefix."""
        return self.location.startswith("s3://")

    @property
    def aws_conn_id(self) -> str:
        """The Airflow connection an s3:// location is reached with."""
        return self.conn_id or "aws_default"

    def s3_location(self) -> tuple[str, str]:
        """``(bucket, prefix)`` of an s3:// location; the prefix has no leading or trailing '/'."""
        return split_s3(self.location)


def _not_a_bool(value: Any) -> Any:
    """``sample: true`` would otherwise read as one row."""
    if isinstance(value, bool):
        raise rule(f"sample: {str(value).lower()} is not a number", "write a number of rows or a share, e.g. 0.25")
    return value


_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


HOST_HINT = "write a host name or an IP address, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"


def host_problem(value: str) -> tuple[str, str] | None:
    """Why ``value`` is not a host name or IP address a server can listen on, as (problem, fix), or None."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels):
        if not all(label.isdigit() for label in labels):
            return None
        return f"host '{value}' is not an IP address", HOST_HINT
    if "://" in value:
        name = urlsplit(value).hostname
        fix = f"write the host alone: host: {name}" if name else HOST_HINT
        return f"host '{value}' is a URL, not a host name", fix
    if value.count(":") == 1 and value.rpartition(":")[2].isdigit():
        return f"host '{value}' has a port", "the port is deployment.local.port: write the host alone"
    return f"host '{value}' is not a host name or an IP address", HOST_HINT


K8S_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"


_QUANTITY_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def parse_quantity(quantity: str) -> float:
    """A Kubernetes quantity (``250m``, ``1``, ``512Mi``) as a number of units."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", quantity)
    if not match:
        raise ValueError(f"'{quantity}' is not a Kubernetes quantity")
    return float(match.group(1)) * _QUANTITY_SUFFIX[match.group(2) or ""]


_IMAGE_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"


_IMAGE_DOMAIN = rf"(?:{_IMAGE_HOST_PART}(?:\.{_IMAGE_HOST_PART})*(?::[0-9]+)?)"


_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"


#: An image reference as the distribution spec defines it (``[registry/]path[:tag][@digest]``).
IMAGE_REFERENCE = re.compile(
    rf"(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
