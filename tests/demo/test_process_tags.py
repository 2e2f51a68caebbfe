"""Finding what a harness or a killed step left running: by environment tag and by session."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from demo.process_tags import in_sessions, tagged, wait_until_empty


def _sleeper(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def test_a_tagged_process_is_found_until_it_is_gone() -> None:
    tag = uuid.uuid4().hex
    proc, other = _sleeper({"SLUICE_TEST_TAG": tag}), _sleeper()
    try:
        found = tagged("SLUICE_TEST_TAG", tag)
        assert len(found) == 1 and "time.sleep(60)" in found[0], "the tagged child, and only it"
        assert in_sessions({other.pid}) and not in_sessions({-1})
    finally:
        proc.kill()
        other.kill()
        proc.wait()
        other.wait()
    assert wait_until_empty(lambda: tagged("SLUICE_TEST_TAG", tag), wait=5) == []
    assert in_sessions({other.pid}) == []


def test_what_is_still_there_after_the_wait_is_returned() -> None:
    assert wait_until_empty(lambda: ["still here", "still here"], wait=0.6) == ["still here"]
