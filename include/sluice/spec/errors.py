"""Spec errors that name the file, the line and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one spec file.

    Attributes:
        file: Path of the spec as given to the loader.
        line: 1-based line, or None when the problem is the whole file.
        column: 1-based column, or None.
        where: Dotted location inside the spec (``training.params``), or "" for the file.
        message: What is wrong.
        hint: How to fix it, or "".
        severity: ``"error"``: the spec cannot work (``sluice lint`` exits 1); ``"warning"``:
            it can, but something is left unchecked or unprotected (printed, exit 0).
    """

    file: str
    line: int | None
    column: int | None
    where: str
    message: str
    hint: str = ""
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        pos = self.file
        if self.line is not None:
            pos += f":{self.line}"
            if self.column is not None:
                pos += f":{self.column}"
        label = "warning: " if self.severity == "warning" else ""
        text = f"{pos}: {label}{self.where + ': ' if self.where else ''}{self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class SpecError(Exception):
    """A spec that cannot be compiled; carries every issue found, not just the first."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))
