"""The embedded launcher's output: one whole line per message, whatever thread writes it."""

from __future__ import annotations

import contextlib
import io
import threading

from sluice.airflow.runtime.embedded import emit


def test_lines_written_by_many_threads_at_once_stay_whole() -> None:
    # The launcher says "started scheduler" while each component's thread pumps its output; a
    # log read by a person or a test must never hold one line spliced into another.
    def part(number: int) -> None:
        for i in range(300):
            emit(f"part{number}", f"line {i} " + "x" * 200)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        threads = [threading.Thread(target=part, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 * 300
    assert all(line.count(" | ") == 1 and line.endswith("x" * 200) for line in lines)
