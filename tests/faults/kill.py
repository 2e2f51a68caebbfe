"""Run a step in a process of its own that kills itself (SIGKILL) at a named fault point.

Every fault test does the same: write the step's work to a script file, run it with
``SLUICE_FAULT_POINT=<point>``, and insist it died by SIGKILL exactly there (a run that
finishes, or fails otherwise, means the point was never reached: the test would prove
nothing). The script is a file, not ``python -c``: pyspark 4.3's ``pyspark.sql.connect``
(imported by Great Expectations and by Spark) takes a ``__main__`` without ``__file__`` for
a doctest run and calls ``sys.exit(0)``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Sequence
from pathlib import Path

from demo.process_tags import tagged, wait_until_empty

#: Environment variable carrying a tag unique to one killed process, inherited by its children.
TAG = "SLUICE_FAULT_TEST_TAG"


def run_killed(point: str, command: Sequence[str], timeout: float = 600) -> str:
    """Run ``command`` with ``SLUICE_FAULT_POINT=point`` and assert it was killed there.

    Returns:
        The tag set in the process's environment (see :func:`survivors`).
    """
    tag = uuid.uuid4().hex
    done = subprocess.run(
        list(command),
        env=dict(os.environ, SLUICE_FAULT_POINT=point, **{TAG: tag}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == -9, (
        f"expected a SIGKILL at {point}, got exit code {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return tag


def kill_script(point: str, folder: Path, body: str, *args: str, timeout: float = 600) -> str:
    """Write ``body`` (dedented) to a script in ``folder`` and run it killed at ``point``.

    Returns:
        The tag of the killed process (see :func:`survivors`).
    """
    text = textwrap.dedent(body)
    script = folder / f"fault_step_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py"
    script.write_text(text)
    return run_killed(point, [sys.executable, str(script), *args], timeout=timeout)


def survivors(tag: str, wait: float = 30.0) -> list[str]:
    """Command lines of processes still alive that a killed process started (by its tag).

    A child that watches its parent (Spark's JVM watches the Python driver) needs a moment to
    notice the kill: this waits up to ``wait`` seconds for the list to empty.
    """
    return wait_until_empty(lambda: tagged(TAG, tag), wait)
