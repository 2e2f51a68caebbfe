"""Load pipeline specs from YAML, reporting every error with file, line and a hint."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sluice.spec.errors import SpecError, SpecIssue
from sluice.spec.models import PipelineSpec

SPEC_SUFFIX = ".pipeline.yaml"
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec with where it came from.

    Attributes:
        spec: The validated model.
        path: Absolute path of the YAML file.
        project_dir: Root that relative paths in the spec resolve against.
    """

    spec: PipelineSpec
    path: Path
    project_dir: Path

    def resolve(self, relative: str) -> Path:
        """Resolve a path from the spec against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else (self.project_dir / p)

    @property
    def spec_hash(self) -> str:
        """Content hash of the validated spec (stable across key order and comments)."""
        canonical = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def find_project_dir(spec_path: Path) -> Path:
    """Return the project root for a spec.

    ``SLUICE_PROJECT_DIR`` wins; otherwise the nearest ancestor holding ``pyproject.toml``
    or ``airflow_settings.yaml``; otherwise the spec's own folder.
    """
    env = os.environ.get("SLUICE_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    for parent in spec_path.resolve().parents:
        if (parent / "pyproject.toml").exists() or (parent / "airflow_settings.yaml").exists():
            return parent
    return spec_path.resolve().parent


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _positions(node: yaml.Node, loc: Loc, out: dict[Loc, yaml.Mark], dups: list[tuple[Loc, yaml.Mark]]) -> None:
    out.setdefault(loc, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                dups.append(((*loc, key), key_node.start_mark))
            seen.add(key)
            out[(*loc, key)] = key_node.start_mark
            _positions(value_node, (*loc, key), out, dups)
            out[(*loc, key)] = key_node.start_mark
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, (*loc, i), out, dups)


def _model_fields_at(data: Any, loc: Loc) -> list[str]:
    """Field names of the model that sits at ``loc`` in the data (for 'did you mean')."""
    model: Any = PipelineSpec
    node = data
    for part in loc:
        model = _unwrap(model, node)
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part not in model.model_fields:
                return []
            model = model.model_fields[part].annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        node = node.get(part) if isinstance(node, dict) else None
    model = _unwrap(model, node)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(annotation: Any, node: Any) -> Any:
    """Strip Optional/list/Annotated/unions down to the model that fits ``node``."""
    for _ in range(6):
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated or (origin is list and not isinstance(node, list)):
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            chosen = options[0]
            if isinstance(node, dict) and "type" in node:
                for opt in options:
                    fields = getattr(opt, "model_fields", {})
                    tag = fields.get("type")
                    if tag is not None and node["type"] in typing.get_args(tag.annotation):
                        chosen = opt
            annotation = chosen
        else:
            break
    return annotation


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Drop the union-tag parts pydantic adds to a location (``expectations.0.between.min``)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        is_tag = isinstance(node, dict) and part not in node and node.get("type") == part
        if is_tag:
            continue
        out.append(part)
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _hint_for(err: dict[str, Any], data: Any, loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _model_fields_at(data, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'?"
        return f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else "remove this key"
    if kind == "missing":
        return f"add '{loc[-1]}'"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        value = str(err.get("input", ""))
        options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",")]
        close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else f"use one of {expected}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        options = [o.strip(" '") for o in str(ctx.get("expected_tags", "")).split(",")]
        close = difflib.get_close_matches(str(ctx.get("tag", "")), options, n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(options)}"
    if kind == "string_pattern_mismatch" and loc == ("pipeline",):
        return "use lower-case letters, digits and '_', starting with a letter"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "job":
        return "write it as 'path/to/file.py:function'"
    return ""


def _named_mark(message: str, loc: Loc, marks: dict[Loc, yaml.Mark]) -> yaml.Mark | None:
    """For a rule spanning several keys, the position of the first key its message names."""
    for word in message.replace(",", " ").replace("'", " ").split():
        for base in (loc, ()):
            key = (*base, *word.split("."))
            if key in marks and key != loc:
                return marks[key]
    return None


def pipeline_line(path: Path) -> int:
    """Line of the ``pipeline:`` key in a spec file (1 when it cannot be found)."""
    try:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.startswith("pipeline:"):
                return number
    except OSError:
        pass
    return 1


def load_spec(path: str | Path) -> LoadedSpec:
    """Load and validate one spec file.

    Args:
        path: The ``*.pipeline.yaml`` file.

    Returns:
        The validated spec with its location.

    Raises:
        SpecError: With every problem found, each naming file, line and a hint.
    """
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([SpecIssue(shown, None, None, "", f"cannot read file: {exc.strerror}")]) from None
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            [
                SpecIssue(
                    shown,
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    "",
                    f"YAML syntax error: {exc.problem or exc}",
                    "check indentation and quoting on this line or the one above",
                )
            ]
        ) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise SpecError(
            [SpecIssue(shown, 1, None, "", "a spec must be a YAML mapping", "start with 'pipeline: <name>'")]
        )
    marks: dict[Loc, yaml.Mark] = {}
    dups: list[tuple[Loc, yaml.Mark]] = []
    _positions(root, (), marks, dups)
    issues = [
        SpecIssue(
            shown,
            m.line + 1,
            m.column + 1,
            ".".join(map(str, loc)),
            "key appears twice",
            "keep one; YAML would silently use the last",
        )
        for loc, m in dups
    ]
    data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _data_loc(data, tuple(err["loc"]))
            mark = _named_mark(err["msg"], loc, marks)
            for cut in range(len(loc), -1, -1):
                if mark is not None:
                    break
                mark = marks.get(loc[:cut])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown key '{loc[-1]}'"
            elif err["type"] == "union_tag_invalid":
                message = f"unknown type '{err.get('ctx', {}).get('tag')}'"
            issues.append(
                SpecIssue(
                    shown,
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    ".".join(map(str, loc)),
                    message,
                    _hint_for(dict(err), data, loc),
                )
            )
        raise SpecError(issues) from None
    if issues:
        raise SpecError(issues)
    loaded = LoadedSpec(spec=spec, path=path.resolve(), project_dir=find_project_dir(path))
    _check_files(loaded, marks, shown)
    return loaded


def _check_files(loaded: LoadedSpec, marks: dict[Loc, yaml.Mark], shown: str) -> None:
    """Catch references to files that do not exist before a run does."""
    job_file = loaded.spec.features.job.split(":", 1)[0]
    if not loaded.resolve(job_file).is_file():
        m = marks.get(("features", "job"))
        raise SpecError(
            [
                SpecIssue(
                    shown,
                    m.line + 1 if m else None,
                    m.column + 1 if m else None,
                    "features.job",
                    f"feature job file '{job_file}' not found under {loaded.project_dir}",
                    "paths are relative to the project root",
                )
            ]
        )


@dataclass
class LoadReport:
    """Every spec in a folder: the good ones and the errors of the bad ones."""

    specs: list[LoadedSpec]
    errors: dict[str, SpecError]


def load_folder(folder: str | Path) -> LoadReport:
    """Load every ``*.pipeline.yaml`` in ``folder``; one bad spec never hides the others.

    Two specs naming the same pipeline are both rejected, since neither can be said to win.
    """
    return load_files(sorted(Path(folder).glob(f"*{SPEC_SUFFIX}")))


def load_files(paths: list[Path]) -> LoadReport:
    """Load the given spec files; errors are keyed by each path as given."""
    report = LoadReport(specs=[], errors={})
    by_name: dict[str, list[tuple[Path, LoadedSpec]]] = {}
    for path in paths:
        try:
            loaded = load_spec(path)
        except SpecError as exc:
            report.errors[str(path)] = exc
            continue
        by_name.setdefault(loaded.spec.pipeline, []).append((path, loaded))
    for name, group in by_name.items():
        if len(group) == 1:
            report.specs.append(group[0][1])
            continue
        files = ", ".join(p.name for p, _ in group)
        for p, _ in group:
            issue = SpecIssue(
                str(p),
                pipeline_line(p),
                1,
                "pipeline",
                f"pipeline '{name}' is defined in several files: {files}",
                "pipeline names must be unique",
            )
            report.errors[str(p)] = SpecError([issue])
    return report
