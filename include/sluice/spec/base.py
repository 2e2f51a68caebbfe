"""What every spec model shares: strict validation and rule errors that carry a hint."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError


def rule(message: str, hint: str, where: str | None = None) -> PydanticCustomError:
    """A spec rule broken: the message, how to fix it, and optionally the key it is about.

    Args:
        message: What is wrong.
        hint: How to fix it (the loader shows it as the issue's hint).
        where: Dotted key below the model that raised it (``"source.pattern"``), so the
            loader points at that key's line rather than at the model's.
    """
    return PydanticCustomError("sluice_rule", "{message}", {"message": message, "hint": hint, "where": where or ""})


class StrictModel(BaseModel):
    """Base for every spec model: unknown keys are errors; NaN and infinity are never numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)
