"""Lint checks that import code: the model class of a spec, its parameters and its kind.

``load_spec`` checks what it can without importing anything (YAML, types, bounds, cron,
columns against the declared schema, the feature function found with ``ast``); it runs in
the DAG processor every few seconds. The checks here import the model's module (for
scikit-learn, about a second), so only ``sluice lint`` and ``sluice plan`` run them, never
the DAG file.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import pkgutil
import re
import warnings
from typing import Any

from sluice.spec.errors import SpecIssue
from sluice.spec.loader import LoadedSpec
from sluice.spec.models import CLASSIFICATION_METRICS, REGRESSION_METRICS

PROBA_METRICS = frozenset({"roc_auc", "log_loss"})


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f"did you mean '{close[0]}'?" if close else ""


def _sibling_modules(module: str) -> list[str]:
    """Importable modules beside ``module`` (for 'did you mean' on a misspelt module path)."""
    parent, _, _ = module.rpartition(".")
    if not parent:
        return [m.name for m in pkgutil.iter_modules()]
    try:
        package = importlib.import_module(parent)
    except Exception:
        return []
    paths = getattr(package, "__path__", None)
    return [f"{parent}.{m.name}" for m in pkgutil.iter_modules(paths)] if paths else []


def import_model_class(path: str) -> tuple[Any, str, str]:
    """Import ``package.module.Class``.

    Returns:
        ``(class_or_None, problem, hint)``: the class, or None with why and how to fix it.
    """
    module_name, _, class_name = path.rpartition(".")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(f"{missing}."):
            hint = _did_you_mean(missing, _sibling_modules(missing)) or "check the module path and that it is installed"
            return None, f"module '{missing}' not found", hint
        return None, f"importing '{module_name}' failed: {exc}", f"install '{missing}' in the project environment"
    except Exception as exc:  # user code: any error on import is the spec's problem to report
        return None, f"importing '{module_name}' failed: {type(exc).__name__}: {exc}", f"fix module '{module_name}'"
    cls = getattr(module, class_name, None)
    if cls is None:
        public = [n for n in dir(module) if not n.startswith("_") and inspect.isclass(getattr(module, n, None))]
        hint = _did_you_mean(class_name, public) or f"'{module_name}' has no such name; check the spelling"
        return None, f"'{module_name}' has no class '{class_name}'", hint
    if not inspect.isclass(cls):
        return None, f"'{path}' is a {type(cls).__name__}, not a class", "name an estimator class"
    return cls, "", ""


def _param_names(cls: Any) -> list[str] | None:
    """Constructor parameters of an estimator class; None when it takes ``**kwargs`` it does not name."""
    if _takes_kwargs(cls):
        # XGBoost's classes take ``**kwargs`` and pass them to their base: an instance's
        # get_params() names them all, where the class's signature names only ``objective``.
        with contextlib.suppress(Exception):
            return list(cls().get_params())
        return None
    getter = getattr(cls, "_get_param_names", None)
    if callable(getter):
        with contextlib.suppress(Exception):  # sklearn raises for estimators with *args: use the signature
            return list(getter())
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return [n for n, p in signature.parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def _takes_kwargs(cls: Any) -> bool:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def check_model(loaded: LoadedSpec) -> list[SpecIssue]:
    """The model class exists, is an estimator, takes the params given and fits the metric.

    Args:
        loaded: A spec that loaded.

    Returns:
        Every problem found (empty when the model is fine).
    """
    training = loaded.spec.training
    metric = loaded.spec.evaluation.metric
    cls, problem, hint = import_model_class(training.model)
    if cls is None:
        return [loaded.issue("training.model", problem, hint)]
    if training.engine == "spark":
        # Its params and the metric's kind were checked as the spec loaded (SPARK_PARAMS,
        # SPARK_MODELS); a PySpark estimator is no scikit-learn estimator to ask.
        return []
    if not (callable(getattr(cls, "fit", None)) and callable(getattr(cls, "predict", None))):
        return [
            loaded.issue(
                "training.model",
                f"'{training.model}' is not an estimator (it has no fit and predict methods)",
                "name a scikit-learn compatible estimator class, e.g. sklearn.ensemble.HistGradientBoostingClassifier",
            )
        ]
    names = _param_names(cls)
    if names is not None:
        unknown = [p for p in training.params if p not in names]
        if unknown:
            return [
                loaded.issue(
                    f"training.params.{p}",
                    f"'{cls.__name__}' has no parameter '{p}'",
                    _did_you_mean(p, names) or f"its parameters: {', '.join(names)}",
                )
                for p in unknown
            ]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator = cls(**training.params)
            validate = getattr(estimator, "_validate_params", None)
            # XGBoost inherits _validate_params from scikit-learn without the constraints it reads.
            if callable(validate) and hasattr(estimator, "_parameter_constraints"):
                # scikit-learn checks parameter values only in fit(); ask it now.
                validate()
    except Exception as exc:  # any error constructing user code is a spec problem
        named = re.search(r"'(\w+)' parameter", str(exc))
        where = (
            f"training.params.{named.group(1)}" if named and named.group(1) in training.params else "training.params"
        )
        return [
            loaded.issue(
                where,
                f"{cls.__name__}(**params) is refused: {exc}",
                "fix the parameter values (see the class's documentation)",
            )
        ]
    return _check_metric(loaded, estimator, metric)


def _check_metric(loaded: LoadedSpec, estimator: Any, metric: str) -> list[SpecIssue]:
    from sklearn.base import is_classifier, is_regressor

    name = type(estimator).__name__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classifier, regressor = is_classifier(estimator), is_regressor(estimator)
    if classifier and metric in REGRESSION_METRICS:
        return [
            loaded.issue(
                "evaluation.metric",
                f"metric '{metric}' scores a regressor but {name} is a classifier",
                f"use one of {', '.join(sorted(CLASSIFICATION_METRICS))}",
            )
        ]
    if regressor and metric in CLASSIFICATION_METRICS:
        return [
            loaded.issue(
                "evaluation.metric",
                f"metric '{metric}' scores a classifier but {name} is a regressor",
                f"use one of {', '.join(sorted(REGRESSION_METRICS))}",
            )
        ]
    if metric in PROBA_METRICS and not hasattr(estimator, "predict_proba"):
        return [
            loaded.issue(
                "evaluation.metric",
                f"metric '{metric}' needs predicted probabilities but {name} has no predict_proba",
                "use accuracy or f1, or a model with predict_proba",
            )
        ]
    return []


def schema_warnings(loaded: LoadedSpec, shown: str) -> list[SpecIssue]:
    """What a spec that works leaves unprotected (warnings; cheap, no import).

    Args:
        loaded: A spec that loaded.
        shown: The spec's path as the user named it (for the command in the hint).
    """
    if loaded.spec.source.columns is not None:
        return []
    return [
        loaded.warning(
            "source",
            "source.columns is not declared: the first accepted batch's column types are pinned as they come "
            "and later batches are held to them (sluice status shows the pin; sluice schema-pin "
            f"{shown} --from-batch ID or --reset changes it), and lint cannot check training.target, split.by, "
            "features and drop against the feature job's output",
            f"declare it from a sample batch: sluice infer-schema SAMPLE.{loaded.spec.source.format} "
            f"--spec {shown} --write",
        )
    ]


def check_feature_columns(loaded: LoadedSpec, produced: tuple[str, ...]) -> list[SpecIssue]:
    """The training columns against the feature job's output (learnt by running it).

    ``training.target``, ``split.by`` and ``features`` are read from the feature table, so
    each must be one of its columns; ``drop`` only removes columns, so an entry is refused
    only when neither the output nor the batch (``source.columns``) has it (a typo).

    Args:
        loaded: A spec that loaded.
        produced: The columns the feature job outputs.

    Returns:
        One issue per column the feature table will not have.
    """
    training = loaded.spec.training
    output = list(produced)
    batch = list(loaded.spec.source.columns or {})
    named = [("training.target", training.target)]
    if training.split.by is not None:
        named.append(("training.split.by", training.split.by))
    named += [(f"training.features.{i}", c) for i, c in enumerate(training.features or [])]
    issues = []
    for where, column in named:
        if column in output:
            continue
        if column in batch:
            message = f"column '{column}' is not in the feature job's output (a batch column the job does not keep)"
            hint = f"return '{column}' from the feature job, or name one of its columns: {_listed(output)}"
        else:
            message = f"column '{column}' is not in the feature job's output"
            hint = _did_you_mean(column, output) or f"its columns: {_listed(output)}"
        issues.append(loaded.issue(where, message, hint))
    for i, column in enumerate(training.drop):
        if column not in output and column not in batch:
            issues.append(
                loaded.issue(
                    f"training.drop.{i}",
                    f"column '{column}' is neither in the feature job's output nor in source.columns",
                    _did_you_mean(column, output + batch) or f"the job's columns: {_listed(output)}",
                )
            )
    return issues


def _listed(names: list[str], most: int = 20) -> str:
    shown = ", ".join(names[:most]) or "none"
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def lint_checks(loaded: LoadedSpec) -> list[SpecIssue]:
    """Every check that needs imports, for ``sluice lint`` and ``sluice plan``.

    Args:
        loaded: A spec that loaded.

    Returns:
        The problems found, each with file, line and hint.
    """
    return check_model(loaded)
