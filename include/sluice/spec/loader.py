"""Load pipeline specs from YAML, reporting every error with file, line and a hint.

A spec is read once by :func:`sluice.spec.yaml_reader.read_document` (bounded, plain YAML,
duplicate keys refused, the position of every key kept), then validated by the pydantic
models here, with hints that name the closest field, and checked against the project (the
feature job, local paths) and against the other specs of a folder. Whatever a file holds,
the result is a spec or a :class:`SpecError` whose issues name file, line and a hint, never
a traceback.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sluice.settings import settings
from sluice.spec import document_cache
from sluice.spec.errors import SpecError, SpecIssue
from sluice.spec.expectations import type_names
from sluice.spec.models import PipelineSpec
from sluice.spec.yaml_reader import MAX_SPEC_BYTES, Loc, issue_at, pipeline_line, read_bytes, read_document

SPEC_SUFFIX = ".pipeline.yaml"


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec with where it came from.

    Attributes:
        spec: The validated model.
        path: Absolute path of the YAML file.
        project_dir: Root that relative paths in the spec resolve against.
        positions: ``(line, column)`` (1-based) of every key, by dotted location
            (``"deployment.local.port"``); for messages about a valid spec.
    """

    spec: PipelineSpec
    path: Path
    project_dir: Path
    positions: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def resolve(self, relative: str) -> Path:
        """Resolve a path from the spec against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else (self.project_dir / p)

    def issue(self, where: str, message: str, hint: str = "", file: str | None = None) -> SpecIssue:
        """A problem at ``where`` (dotted), placed at that key or the nearest written parent."""
        parts = where.split(".") if where else []
        for cut in range(len(parts), 0, -1):
            pos = self.positions.get(".".join(parts[:cut]))
            if pos is not None:
                return SpecIssue(file or str(self.path), pos[0], pos[1], where, message, hint)
        return SpecIssue(file or str(self.path), pipeline_line(self.path), 1, where, message, hint)

    def warning(self, where: str, message: str, hint: str = "") -> SpecIssue:
        """Like :meth:`issue`, for what does not stop the spec from working (``sluice lint`` exits 0)."""
        return dataclasses.replace(self.issue(where, message, hint), severity="warning")

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
    env = settings().project_dir
    if env:
        return env.resolve()
    resolved = spec_path.resolve()
    for parent in resolved.parents:
        if (parent / "pyproject.toml").exists() or (parent / "airflow_settings.yaml").exists():
            return parent
    return resolved.parent


def model_at(data: Any, loc: Loc) -> Any:
    """The model (or other annotation) that sits at ``loc`` in spec data, or None.

    Args:
        data: The spec as plain data (as YAML gives it); picks the expectation model by 'type'.
        loc: Keys and list indexes from the root.
    """
    model: Any = PipelineSpec
    node = data
    for part in loc:
        model = _unwrap(model, node)
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part not in model.model_fields:
                return None
            model = model.model_fields[part].annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        else:
            return None
        node = node.get(part) if isinstance(node, dict) else None
    return _unwrap(model, node)


def _model_fields_at(data: Any, loc: Loc) -> list[str]:
    """Field names of the model that sits at ``loc`` in the data (for 'did you mean')."""
    model = model_at(data, loc)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _description_at(data: Any, loc: Loc) -> str:
    """The reference description of the field at ``loc`` (the fallback hint)."""
    for cut in range(len(loc), 0, -1):
        if isinstance(loc[cut - 1], int):
            continue
        model = model_at(data, loc[: cut - 1])
        if isinstance(model, type) and issubclass(model, BaseModel):
            info = model.model_fields.get(str(loc[cut - 1]))
            if info is not None and info.description:
                name = str(loc[cut - 1])
                return f"{name}: {info.description[0].lower()}{info.description[1:]}"
    return ""


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


_TYPE_HINTS = {
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "finite_number": "write a finite number (not .nan or .inf)",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write a string (quote it if YAML reads it as something else)",
    "list_type": "write a list: [a, b] or one '- item' per line",
    "dict_type": "write a mapping: {key: value} or one 'key: value' per line",
    "model_type": "write a mapping: {key: value} or one 'key: value' per line",
    "model_attributes_type": "write a mapping: {key: value} or one 'key: value' per line",
}


def _item_at(data: Any, loc: Loc) -> Any:
    node = data
    for part in loc:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _hint_for(err: dict[str, Any], data: Any, loc: Loc) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "sluice_rule":
        return str(ctx.get("hint", ""))
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _model_fields_at(data, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'?"
        return f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else "remove this key"
    if kind == "missing":
        description = _description_at(data, loc)
        return f"add '{loc[-1]}'" + (f" ({description})" if description else "")
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        value = str(err.get("input", ""))
        options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",")]
        close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else f"use one of {expected}"
    if kind == "union_tag_not_found":
        keys = list(_item_at(data, loc)) if isinstance(_item_at(data, loc), dict) else []
        close = difflib.get_close_matches("type", [str(k) for k in keys], n=1, cutoff=0.6)
        if close:
            return f"did you mean 'type'? (found '{close[0]}')"
        return f"add 'type' (one of {', '.join(type_names())})"
    if kind == "invalid_key":
        return "keys are names: rename it or quote it if it is meant as text"
    if kind == "union_tag_invalid":
        options = [o.strip(" '") for o in str(ctx.get("expected_tags", "")).split(",")]
        close = difflib.get_close_matches(str(ctx.get("tag", "")), options, n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(options)}"
    if kind == "string_pattern_mismatch" and loc == ("pipeline",):
        return "use lower-case letters, digits and '_', starting with a letter"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "job":
        return "write it as 'path/to/file.py:function'"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "model":
        return "write the import path of the class, e.g. sklearn.ensemble.RandomForestClassifier"
    description = _description_at(data, loc)
    general = _TYPE_HINTS.get(kind, "")
    hint = "; ".join(h for h in (general, description) if h)
    return hint or "see the spec reference ('sluice reference') for this section"


def _named_mark(message: str, loc: Loc, marks: dict[Loc, yaml.Mark]) -> yaml.Mark | None:
    """For a rule spanning several keys, the position of the first key its message names."""
    for word in message.replace(",", " ").replace("'", " ").split():
        for base in (loc, ()):
            key = (*base, *word.split("."))
            if key in marks and key != loc:
                return marks[key]
    return None


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
        return _load_spec(path, shown)
    except SpecError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise SpecError(
            [SpecIssue(shown, 1, None, "", f"spec too complex to load ({type(exc).__name__})", "simplify the file")]
        ) from None


def _load_spec(path: Path, shown: str) -> LoadedSpec:
    raw = read_bytes(path, shown)
    # An unchanged spec that loaded before is not read again (sluice.spec.document_cache).
    hit = _from_cache(path, raw)
    spec, (data, positions) = hit if hit is not None else _read(path, shown, raw)
    resolved = path.resolve()
    loaded = LoadedSpec(spec=spec, path=resolved, project_dir=find_project_dir(resolved), positions=positions)
    problems = [
        *_check_feature_job(loaded, shown),
        *_check_locations(loaded, shown),
        *_check_serving_port(loaded, shown),
    ]
    if problems:
        raise SpecError(problems)
    if hit is None:
        document_cache.put(path, raw, (data, positions))
    return loaded


def _from_cache(path: Path, raw: bytes) -> tuple[PipelineSpec, document_cache.Document] | None:
    """The spec from the cached reading of ``raw``, or None: no entry, or one the models refuse.

    Models that changed since the entry was written may refuse it; the file itself is then
    read, for its errors at their lines.
    """
    cached = document_cache.get(path, raw)
    if cached is None:
        return None
    try:
        return PipelineSpec.model_validate(cached[0]), cached
    except ValidationError:
        return None


def _read(path: Path, shown: str, raw: bytes) -> tuple[PipelineSpec, document_cache.Document]:
    """The spec read from ``raw`` and validated, with its data and key positions."""
    data, marks, dates = read_document(path, shown, raw)
    date_issues = _date_issues(shown, data, dates)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        # A base-60 number where text is expected is also a type error: report it once, as a date.
        dated = {issue.where for issue in date_issues}
        issues = [_validation_issue(shown, dict(err), data, marks) for err in exc.errors()]
        raise SpecError(date_issues + [i for i in issues if i.where not in dated]) from None
    if date_issues:
        raise SpecError(date_issues)
    return spec, (data, {".".join(map(str, loc)): (m.line + 1, m.column + 1) for loc, m in marks.items() if loc})


#: YAML 1.1's own timestamp form (PyYAML's resolver): what every YAML 1.1 tool makes a date.
_YAML_TIMESTAMP = next(rx for tag, rx in yaml.SafeLoader.yaml_implicit_resolvers["2"] if tag.endswith(":timestamp"))


def _takes_text(annotation: Any) -> bool:
    """Whether a field of this (unwrapped) annotation takes text: ``str``, ``Any`` or a union with ``str``."""
    if annotation is str or annotation is Any:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_takes_text(a) for a in typing.get_args(annotation))
    return False


def _date_issues(shown: str, data: Any, dates: list[tuple[Loc, yaml.Mark, str]]) -> list[SpecIssue]:
    """Unquoted dates, timestamps and base-60 numbers where the spec expects text.

    This reader keeps ``2024-01-01`` as text, but YAML 1.1 (and so the editor's JSON Schema
    check, ``yaml.safe_load`` and any other tool reading the spec) makes it a date, and
    ``12:30`` is the number 750 everywhere: the text only survives quoted.
    """
    issues = []
    for loc, mark, text in dates:
        if not _takes_text(model_at(data, loc)):
            continue  # a number or a choice there: validation says what is wrong
        value = _item_at(data, loc)
        if isinstance(value, int | float):
            message = f"{text} is unquoted: YAML reads it as the base-60 number {value}, not as text"
        elif _YAML_TIMESTAMP.match(text):
            what = "a date and time" if ":" in text else "a date"
            message = f"{text} is unquoted: YAML reads it as {what}, not as text"
        elif not text[:1].isdigit() or "-" not in text:
            continue  # 0:30 is text to YAML 1.1 too (a base-60 number starts with 1-9)
        else:
            message = (
                f"{text} is unquoted: YAML reads it as text only because its time has no seconds "
                "(with them it is a timestamp)"
            )
        key = loc[-1]
        written = f"{key}: '{text}'" if isinstance(key, str) else f"- '{text}'"
        issues.append(issue_at(shown, mark, ".".join(map(str, loc)), message, f"quote it: {written}"))
    return issues


def _validation_issue(shown: str, err: dict[str, Any], data: Any, marks: dict[Loc, yaml.Mark]) -> SpecIssue:
    loc = _data_loc(data, tuple(err["loc"]))
    ctx = err.get("ctx") or {}
    kind = err["type"]
    mark: yaml.Mark | None = None
    message = err["msg"].removeprefix("Value error, ")
    if kind == "sluice_rule" and ctx.get("where"):
        loc = _below(loc, str(ctx["where"]), marks)
    elif kind == "value_error":
        # A rule over several keys: point at the first key its message names.
        mark = _named_mark(err["msg"], loc, marks)
    elif kind == "union_tag_invalid":
        loc = (*loc, "type")
        message = f"unknown type '{ctx.get('tag')}'"
    elif kind == "union_tag_not_found":
        message = "a check needs a 'type'"
    elif kind == "invalid_key":
        message = f"key {loc[-1]!r} is not a name"
        mark = next((m for k, m in marks.items() if len(k) == len(loc) and _same_key(k[-1], loc[-1])), None)
    elif kind == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'"
    for cut in range(len(loc), -1, -1):
        if mark is not None:
            break
        mark = marks.get(loc[:cut])
    return issue_at(shown, mark, ".".join(map(str, loc)), message, _hint_for(err, data, loc))


def _below(loc: Loc, where: str, marks: dict[Loc, yaml.Mark]) -> Loc:
    """``loc`` extended by the dotted ``where``, whose keys may hold dots themselves
    (``conf.spark.driver.memory`` is ``conf`` then ``spark.driver.memory``): the longest written key wins."""
    parts = where.split(".")
    while parts:
        for cut in range(len(parts), 0, -1):
            key = ".".join(parts[:cut])
            step = (*loc, int(key) if key.isdigit() else key)
            if step in marks or cut == 1:
                loc, parts = step, parts[cut:]
                break
    return loc


def _same_key(written: str | int, parsed: Any) -> bool:
    """Whether a key as written in YAML is the key value pydantic reports."""
    try:
        return bool(yaml.safe_load(str(written)) == parsed)
    except yaml.YAMLError:
        return False


@functools.lru_cache(maxsize=32)
def _job_functions(source: str) -> dict[str, ast.AST]:
    """Top-level names a module defines or imports, by name (read-only: cached by source,
    since specs of one project share feature files)."""
    names: dict[str, ast.AST] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = node
    return names


def _check_feature_job(loaded: LoadedSpec, shown: str) -> list[SpecIssue]:
    """The feature job file exists and defines the function, read with ``ast`` (never imported)."""
    job_file, _, function = loaded.spec.features.job.partition(":")
    where = "features.job"
    target = loaded.resolve(job_file)
    if not target.is_file():
        return [
            loaded.issue(
                where,
                f"feature job file '{job_file}' not found under {loaded.project_dir}",
                "paths are relative to the project root",
                shown,
            )
        ]
    try:
        source = target.read_bytes()
        if len(source) > 10 * MAX_SPEC_BYTES:
            return []
        names = _job_functions(source.decode("utf-8"))
    except SyntaxError as exc:
        return [
            loaded.issue(
                where,
                f"feature job file '{job_file}' has a Python syntax error at line {exc.lineno}: {exc.msg}",
                f"fix {job_file}",
                shown,
            )
        ]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [loaded.issue(where, f"cannot read feature job file '{job_file}': {exc}", "save it as UTF-8", shown)]
    node = names.get(function)
    if node is None:
        functions = [n for n, v in names.items() if isinstance(v, ast.FunctionDef)]
        close = difflib.get_close_matches(function, functions, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"functions defined there: {', '.join(functions) or 'none'}"
        return [loaded.issue(where, f"'{job_file}' defines no function '{function}'", hint, shown)]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args
        positional = len(args.posonlyargs) + len(args.args)
        if args.vararg is None and positional < 2:
            return [
                loaded.issue(
                    where,
                    f"'{function}' in '{job_file}' takes {positional} argument(s); it is called with (spark, inputs)",
                    f"define it as 'def {function}(spark, inputs):'",
                    shown,
                )
            ]
    return []


def _check_serving_port(loaded: LoadedSpec, shown: str) -> list[SpecIssue]:
    """A model server's port on this machine (the target says which) must not be one sluice's own servers use."""
    from sluice.settings import PORT_OFFSET, SettingsError, ports

    serving = _serving_port(loaded)
    if serving is None:
        return []
    where, port = serving
    try:
        taken = {p: name for name, p in ports().items()}
    except SettingsError:
        return []  # a bad port setting stops every command with its own message
    if port not in taken:
        return []
    return [
        loaded.issue(
            where,
            f"port {port} is {taken[port]}, a port sluice's own servers use on this machine",
            f"choose another {where} (or move sluice's ports with {taken[port]} or {PORT_OFFSET})",
            shown,
        )
    ]


def _serving_port(loaded: LoadedSpec) -> tuple[str, int] | None:
    """``(spec path, port)`` of the chosen target's server on this machine, or None when it serves elsewhere."""
    deployment = loaded.spec.deployment
    target = deployment.target_spec
    found = target.local_port(deployment.settings)
    return None if found is None else (f"deployment.{target.name}.{found[0]}", found[1])


def _check_locations(loaded: LoadedSpec, shown: str) -> list[SpecIssue]:
    """Storage and landing folders, resolved against the project: neither may hold the other."""
    spec = loaded.spec
    if spec.source.is_s3 != spec.storage.is_s3:
        return []
    storage: PurePath
    landing: PurePath
    if spec.storage.is_s3:
        storage = PurePosixPath(spec.storage.root.removeprefix("s3://").rstrip("/"))
        landing = PurePosixPath(_landing_key(loaded).removeprefix("s3://").rstrip("/"))
    else:
        storage = Path(os.path.normpath(loaded.resolve(spec.storage.root)))
        landing = Path(os.path.normpath(loaded.resolve(spec.source.uri)))
    if landing == storage or landing.is_relative_to(storage):
        return [
            loaded.issue(
                "source.uri",
                f"landing folder '{spec.source.uri}' is inside storage.root '{spec.storage.root}'",
                "keep the landing folder (where producers write) apart from sluice's storage",
                shown,
            )
        ]
    if storage.is_relative_to(landing):
        return [
            loaded.issue(
                "storage.root",
                f"storage.root '{spec.storage.root}' is inside the landing folder '{spec.source.uri}'",
                "keep sluice's storage apart from the landing folder (where producers write)",
                shown,
            )
        ]
    return []


@dataclass
class LoadReport:
    """Every spec in a folder: the good ones and the errors of the bad ones."""

    specs: list[LoadedSpec]
    errors: dict[str, SpecError]


def load_folder(folder: str | Path) -> LoadReport:
    """Load every ``*.pipeline.yaml`` in ``folder``; one bad spec never hides the others.

    Specs that clash (the same pipeline name, landing folder or local serving port) are all
    rejected, since none of them can be said to win.
    """
    return load_files(sorted(Path(folder).glob(f"*{SPEC_SUFFIX}")))


def _landing_key(loaded: LoadedSpec) -> str:
    source = loaded.spec.source
    if source.is_s3:
        bucket, prefix = source.s3_location()
        return f"s3://{bucket}/{prefix}"
    return os.path.normpath(loaded.resolve(source.uri))


def _clashes(loaded: list[tuple[Path, LoadedSpec]]) -> dict[Path, list[SpecIssue]]:
    """Issues for specs that share what must be theirs alone."""
    # (where, what, hint, key); ``{}`` in where and hint: the spec's serving-port setting (its target names it).
    rules: list[tuple[str, str, str, typing.Callable[[LoadedSpec], str | None]]] = [
        ("pipeline", "pipeline '{}'", "pipeline names must be unique", lambda s: s.spec.pipeline),
        (
            "source.uri",
            "landing folder '{}'",
            "give each pipeline its own landing folder: a batch must belong to one pipeline",
            _landing_key,
        ),
        (
            "{}",
            "local serving port {}",
            "give each pipeline its own {}",
            lambda s: str(port[1]) if (port := _serving_port(s)) else None,
        ),
    ]
    out: dict[Path, list[SpecIssue]] = {}
    for where_of, what, hint_of, key_of in rules:
        groups: dict[str, list[tuple[Path, LoadedSpec]]] = {}
        for path, spec in loaded:
            key = key_of(spec)
            if key is not None:
                groups.setdefault(key, []).append((path, spec))
        for key, group in groups.items():
            if len(group) < 2:
                continue
            files = ", ".join(p.name for p, _ in group)
            for path, spec in group:
                where = where_of.format(port[0]) if (port := _serving_port(spec)) else where_of
                hint = hint_of.format(where)
                message = f"{what.format(key)} is used by several specs: {files}"
                issue = spec.issue(where, message, hint, file=str(path))
                if where == "pipeline":
                    issue = SpecIssue(str(path), pipeline_line(path), 1, where, message, hint)
                out.setdefault(path, []).append(issue)
    return out


def load_files(paths: list[Path]) -> LoadReport:
    """Load the given spec files; errors are keyed by each path as given.

    A file that cannot be loaded never stops the others. Specs that clash with each other
    (see :func:`load_folder`) are all reported.
    """
    report = LoadReport(specs=[], errors={})
    good: list[tuple[Path, LoadedSpec]] = []
    seen: set[Path] = set()
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            continue  # the same file named twice (a folder and a file in it) is one spec
        seen.add(resolved)
        try:
            good.append((path, load_spec(path)))
        except SpecError as exc:
            report.errors[str(path)] = exc
    clashes = _clashes(good)
    for path, loaded in good:
        if path in clashes:
            report.errors[str(path)] = SpecError(clashes[path])
        else:
            report.specs.append(loaded)
    return report
