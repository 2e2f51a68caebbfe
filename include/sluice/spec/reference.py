"""The spec reference in Markdown, generated from the models so the docs cannot drift."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from sluice.spec.models import PipelineSpec


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in args if a is not type(None)]
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in parts) and len(parts) > 1:
            return "one of the expectation types below"
        name = " \\| ".join(_type_name(a) for a in parts)
        return name + (" or null" if len(parts) < len(args) else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[0])} → {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(section defaults)" if isinstance(value, BaseModel) else f"`{value!r}`"
    return "" if field.default is PydanticUndefined else f"`{field.default!r}`"


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.append(annotation)
                for f in annotation.model_fields.values():
                    visit(f.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return seen


def markdown_reference() -> str:
    """Every spec section as a Markdown table: key, type, default, meaning."""
    out: list[str] = []
    for model in _models(PipelineSpec):
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out.append(f"### {model.__name__}\n\n{doc}\n")
        out.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
        for name, field in model.model_fields.items():
            meaning = (field.description or "").replace("|", "\\|")
            out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |")
        out.append("")
    return "\n".join(out)
