"""The registry of expectation types: one class per type is the whole declaration.

A class that subclasses :class:`ExpectationSpec` with a ``type: Literal["..."]`` field
registers that type when its module is imported; sluice finds the types through the
``sluice.expectations`` entry points (name -> class; sluice's own below, a third party's in
its package's metadata, see :mod:`sluice.spec.plugins`), so a package adds one without
editing sluice. From that one declaration come:

- the spec schema entry (the class's fields; the ``validation.expectations`` union is built
  from the registry, so ``sluice reference`` and the JSON Schema list it);
- the lint hint (an unknown or missing ``type`` names every registered one, with the closest
  match first);
- the Great Expectations expectation (:attr:`ExpectationSpec.gx_name` and
  :meth:`ExpectationSpec.gx_kwargs`; no if-chain, no fallback);
- the row-quarantine rule (:attr:`ExpectationSpec.row_level`: failing rows are quarantined,
  or the batch-level check rejects the batch).

Nothing here imports Great Expectations: the adapter (``sluice.services.gx``) looks the class
up by name when it runs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import Field, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.plugins import EXPECTATIONS_GROUP, PluginError, discover

#: Every registered type, by its spec name, in declaration order.
REGISTRY: dict[str, type[ExpectationSpec]] = {}


class UnknownExpectation(KeyError):
    """An expectation type no class registered (a bug: the spec loader refuses unknown types)."""


class ExpectationSpec(StrictModel):
    """Base of every expectation type; subclassing it with a ``type`` literal registers the type.

    Attributes:
        gx_name: Class name in ``great_expectations.expectations``.
        row_level: Failing rows are quarantined (True) or the batch is rejected (False).
    """

    gx_name: ClassVar[str]
    row_level: ClassVar[bool]
    if TYPE_CHECKING:
        # Each type declares its own literal (after its other fields, as the reference lists it).
        type: str

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register a concrete type (one whose ``type`` field is a single literal)."""
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("type")
        names = get_args(field.annotation) if field else ()
        if len(names) == 1:
            if names[0] in REGISTRY:
                raise TypeError(f"expectation type {names[0]!r} is declared twice")
            REGISTRY[names[0]] = cls

    def gx_kwargs(self) -> dict[str, Any]:
        """Arguments of the Great Expectations expectation, from this spec entry."""
        raise NotImplementedError(type(self).__name__)

    @property
    def target(self) -> str | None:
        """The column checked, or None for a batch-level check of the whole table."""
        return None


class ColumnExpectation(ExpectationSpec):
    """A check of one column."""

    column: str = Field(description="Column the expectation applies to.")

    @property
    def target(self) -> str | None:
        """The column checked."""
        return self.column


class NotNull(ColumnExpectation):
    """Column values must not be null (row-level)."""

    gx_name: ClassVar[str] = "ExpectColumnValuesToNotBeNull"
    row_level: ClassVar[bool] = True
    type: Literal["not_null"] = Field(description="Expectation type.")

    def gx_kwargs(self) -> dict[str, Any]:
        """``column``."""
        return {"column": self.column}


class Between(ColumnExpectation):
    """Column values within [min, max]; nulls are not checked (row-level)."""

    gx_name: ClassVar[str] = "ExpectColumnValuesToBeBetween"
    row_level: ClassVar[bool] = True
    type: Literal["between"] = Field(description="Expectation type.")
    min: float | None = Field(None, description="Smallest allowed value (inclusive).")
    max: float | None = Field(None, description="Largest allowed value (inclusive).")

    @model_validator(mode="after")
    def _bounds(self) -> Between:
        if self.min is None and self.max is None:
            raise rule("between needs at least one of min or max", "add min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise rule(f"min ({self.min}) is greater than max ({self.max})", "swap them", "min")
        return self

    def gx_kwargs(self) -> dict[str, Any]:
        """``column``, ``min_value``, ``max_value``."""
        return {"column": self.column, "min_value": self.min, "max_value": self.max}


class InSet(ColumnExpectation):
    """Column values must be one of ``values`` (row-level)."""

    gx_name: ClassVar[str] = "ExpectColumnValuesToBeInSet"
    row_level: ClassVar[bool] = True
    type: Literal["in_set"] = Field(description="Expectation type.")
    values: list[str | int | float] = Field(min_length=1, description="The allowed values.")

    def gx_kwargs(self) -> dict[str, Any]:
        """``column``, ``value_set``."""
        return {"column": self.column, "value_set": list(self.values)}


class MatchesRegex(ColumnExpectation):
    """Column values must match ``regex`` (row-level)."""

    gx_name: ClassVar[str] = "ExpectColumnValuesToMatchRegex"
    row_level: ClassVar[bool] = True
    type: Literal["matches_regex"] = Field(description="Expectation type.")
    regex: str = Field(description="Python regular expression each value must match.")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise rule(
                f"regex {value!r} does not compile: {exc}", "check brackets, parentheses and escapes (quote it in YAML)"
            ) from None
        return value

    def gx_kwargs(self) -> dict[str, Any]:
        """``column``, ``regex``."""
        return {"column": self.column, "regex": self.regex}


class ColumnExists(ColumnExpectation):
    """The column must exist (batch-level: failing it always rejects the batch)."""

    gx_name: ClassVar[str] = "ExpectColumnToExist"
    row_level: ClassVar[bool] = False
    type: Literal["column_exists"] = Field(description="Expectation type.")

    def gx_kwargs(self) -> dict[str, Any]:
        """``column``."""
        return {"column": self.column}


class RowCountBetween(ExpectationSpec):
    """The batch must have between min and max rows (batch-level)."""

    gx_name: ClassVar[str] = "ExpectTableRowCountToBeBetween"
    row_level: ClassVar[bool] = False
    type: Literal["row_count_between"] = Field(description="Expectation type.")
    min: int | None = Field(None, ge=0, le=10**12, description="Fewest rows a batch may have.")
    max: int | None = Field(None, ge=0, le=10**12, description="Most rows a batch may have.")

    @model_validator(mode="after")
    def _bounds(self) -> RowCountBetween:
        if self.min is None and self.max is None:
            raise rule("row_count_between needs at least one of min or max", "add min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise rule(f"min ({self.min}) is greater than max ({self.max})", "swap them", "min")
        return self

    def gx_kwargs(self) -> dict[str, Any]:
        """``min_value``, ``max_value``."""
        return {"min_value": self.min, "max_value": self.max}


def _discovered() -> None:
    """Load every type the ``sluice.expectations`` entry points name (importing a class registers it)."""
    for name, cls in discover(EXPECTATIONS_GROUP).items():
        if not (isinstance(cls, type) and issubclass(cls, ExpectationSpec)) or REGISTRY.get(name) is not cls:
            raise PluginError(
                f"{EXPECTATIONS_GROUP} '{name}' names {cls!r}, not an ExpectationSpec subclass whose type is "
                f"Literal['{name}']: point the entry point at that class"
            )


_discovered()

if TYPE_CHECKING:
    Expectation = ExpectationSpec
else:
    #: One entry of ``validation.expectations``: the registered type its ``type`` names.
    Expectation = Annotated[Union[tuple(REGISTRY.values())], Field(discriminator="type")]  # noqa: UP007
#: Types whose failing rows are quarantined (the others reject the whole batch).
ROW_LEVEL_EXPECTATIONS = frozenset(name for name, cls in REGISTRY.items() if cls.row_level)


def type_names() -> list[str]:
    """The registered types, in declaration order (what a lint hint lists)."""
    return list(REGISTRY)


def lookup(name: str) -> type[ExpectationSpec]:
    """The class registered for ``name``.

    Raises:
        UnknownExpectation: No class registered that type.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownExpectation(f"unknown expectation type {name!r}; registered: {', '.join(REGISTRY)}") from None
