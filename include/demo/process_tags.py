"""Processes found by a tag in their environment (inherited by every child they start).

The production harness (:mod:`demo.production_stack`) and the fault tests
(``tests/faults/kill.py``) tag what they start, then prove nothing of it is left. The functions
live in :mod:`sluice.services.processes` (the production kit uses them too).
"""

from __future__ import annotations

from sluice.services.processes import in_sessions, tagged, wait_until_empty

__all__ = ["in_sessions", "tagged", "wait_until_empty"]
