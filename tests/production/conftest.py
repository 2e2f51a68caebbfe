"""The production-shape tests: one stack of a dozen servers for the whole session.

``make test`` runs them on one xdist worker (group "production", ``tests/conftest.py``);
``make production-stack-test`` runs them alone. Every module shares ONE stack for the session
(:func:`holder`); the tests named ``test_teardown_leaves_nothing`` run last, stop it and check
that nothing is left. ``test_kit.py`` starts a shape of its own through the production kit,
first, before the shared one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from demo.production_stack import Stack, production_stack

TEARDOWN_TEST = "test_teardown_leaves_nothing"


#: Tests that start a production shape of their own (the kit's): they run first, before the
#: shared stack starts, so two shapes never run at once.
OWN_SHAPE = "tests/production/test_kit.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The kit's own-shape tests go first, the teardown tests last (a stable sort keeps the rest's order)."""
    items.sort(key=lambda item: 2 if item.name == TEARDOWN_TEST else 0 if item.nodeid.startswith(OWN_SHAPE) else 1)


class Holder:
    """The stack and whether it has been torn down (a teardown test does it)."""

    def __init__(self, cm: contextlib.AbstractContextManager[Stack]) -> None:
        """Enter ``cm`` (start the stack)."""
        self.cm = cm
        self.stack = cm.__enter__()
        self.closed = False
        self.teardown_seconds: float | None = None

    def close(self) -> None:
        """Exit the stack's context (stop everything, remove the folder) once."""
        if not self.closed:
            self.closed = True
            started = time.monotonic()
            self.cm.__exit__(None, None, None)
            self.teardown_seconds = round(time.monotonic() - started, 1)

    def check_teardown(self) -> None:
        """Stop the stack (if still up); assert no process of it is left and its folder is gone."""
        self.close()
        print(f"production-stack | teardown took {self.teardown_seconds}s")
        print(f"production-stack | start-up seconds: {self.stack.processes.timings}")
        assert self.stack.processes.leftovers() == []
        assert not self.stack.root.exists()


@pytest.fixture(scope="session")
def holder() -> Iterator[Holder]:
    """The running production stack, one per session (stopped at the latest when it ends)."""
    held = Holder(production_stack())
    try:
        yield held
    finally:
        held.close()


@pytest.fixture
def stack(holder: Holder) -> Stack:
    """The running stack."""
    assert not holder.closed, "the stack was torn down by an earlier test"
    return holder.stack
