"""A deploy target as the spec and the plan see it: its settings model and the questions they ask.

A target is declared once, as an instance of :class:`TargetSpec` (or a subclass answering
more), named by an entry point in the ``sluice.deploy_targets`` group (see
:mod:`sluice.spec.plugins`). From that declaration come:

- the spec: ``deployment.target: <name>`` is allowed and ``deployment.<name>`` is validated
  by the target's settings model (unknown keys are spec errors at their line);
- the plan: the train DAG's ``deploy`` step (:meth:`TargetSpec.deploy_step`) and, when the
  target watches its server, the ``<pipeline>__serving`` DAG (:meth:`TargetSpec.watch`);
- the checks of a spec folder: a port on this machine (:meth:`TargetSpec.local_port`);
- the run time: :attr:`TargetSpec.runtime` names the class that deploys, answers "what is
  served now" and the alert's facts (:class:`sluice.steps.targets.DeployTarget`), imported
  only when something runs.

Nothing here imports beyond pydantic: the declaration loads whenever a spec does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel

if TYPE_CHECKING:
    from sluice.spec.models.deployment import Deployment

S = TypeVar("S", bound=BaseModel)

_created = itertools.count()


@dataclass(frozen=True)
class DeployStep:
    """The train DAG's ``deploy`` task, as a target asks the plan for it.

    Attributes:
        kind: Step kind; ``deploy`` calls the run-time target's ``deploy()`` in the task.
        doc: What the task does, for ``sluice plan`` and the task's documentation.
        timeout_minutes: Longest a try may run; None: no limit of its own.
        retries: Retries of the task; None: the DAG's default.
        config: Settings the kind's renderer needs (JSON-able).
    """

    kind: str
    doc: str
    timeout_minutes: float | None = None
    retries: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Watch:
    """The ``<pipeline>__serving`` DAG a target asks for: a scheduled look at its server.

    Attributes:
        cron: When to look.
        description: The DAG's description.
        timeout_minutes: Longest one look may take.
    """

    cron: str
    description: str
    timeout_minutes: float


class TargetSpec(Generic[S]):
    """A deploy target's declaration: the value of its ``sluice.deploy_targets`` entry point.

    Args:
        name: The ``deployment.target`` value (and the entry point's name).
        meaning: One line for the spec's error hint, JSON Schema and reference.
        settings: Model of the ``deployment.<name>`` block. If every field has a default the
            block is optional; otherwise a spec choosing the target must give it.
        runtime: ``module:Class`` of the run-time target (built from the loaded spec and the
            pipeline's store), imported when something deploys or asks what is served.
        manifests: The run-time target can print the objects it applies (``sluice plan
            --manifests``).
    """

    def __init__(self, name: str, meaning: str, settings: type[S], runtime: str, *, manifests: bool = False) -> None:
        """Declare a target (see the class)."""
        self.name = name
        self.meaning = meaning
        self.settings = settings
        self.runtime = runtime
        self.manifests = manifests
        self.order = next(_created)

    @property
    def required(self) -> list[str]:
        """Fields of the settings block without a default (the block is required when any)."""
        return [name for name, info in self.settings.model_fields.items() if info.is_required()]

    def of(self, deployment: Deployment) -> S:
        """This target's settings in a spec's ``deployment`` (chosen or not).

        Raises:
            ValueError: The block is required (see :attr:`required`) and the spec has none.
        """
        block = getattr(deployment, self.name, None)
        if block is None:
            raise ValueError(f"deployment.{self.name} is not set")
        return cast(S, block)

    def chosen(self, deployment: Deployment) -> S | None:
        """This target's settings when the spec chooses it, else None."""
        return self.of(deployment) if deployment.target == self.name else None

    def local_port(self, settings: S) -> tuple[str, int] | None:
        """A port on the machine that runs the deploy, which the server binds.

        Returns:
            ``(field, port)``, ``field`` being the setting's name in the block, or None when
            the target serves elsewhere (the default). sluice refuses a port its own servers
            use and two specs of a folder sharing one.
        """
        return None

    def deploy_step(self, pipeline: str, settings: S) -> DeployStep:
        """The train DAG's ``deploy`` task; by default the ``deploy`` kind, which calls ``deploy()``."""
        return DeployStep(kind="deploy", doc=f"Serve the champion ({self.name}).")

    def watch(self, settings: S) -> Watch | None:
        """The ``<pipeline>__serving`` DAG, or None (the default) when the target needs no watch."""
        return None
