"""The embedded launcher's output: one whole line per message, whatever thread writes it."""

from __future__ import annotations

import contextlib
import io
import threading
import time

from sluice.airflow.runtime.embedded import emit


class SlowStream(io.StringIO):
    """An output that gives other threads their turn inside every write, as a busy file or pipe does."""

    def write(self, text: str) -> int:
        time.sleep(0.0002)
        return super().write(text)


def test_lines_written_by_many_threads_at_once_stay_whole() -> None:
    # The launcher says "started scheduler" while each component's thread pumps its output; a
    # log read by a person or a test must never hold one line spliced into another (print's
    # text-then-newline writes did that: "...status_code=200sluice | started scheduler").
    def part(number: int) -> None:
        for i in range(100):
            emit(f"part{number}", f"line {i} " + "x" * 50)

    out = SlowStream()
    with contextlib.redirect_stdout(out):
        threads = [threading.Thread(target=part, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 * 100
    assert all(line.count(" | ") == 1 and line.endswith("x" * 50) for line in lines)
