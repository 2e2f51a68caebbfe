"""What the scheduler's forkserver imports once, so every LocalExecutor task starts with it loaded.

Each Airflow task is a fresh process forked from a LocalExecutor worker. Without this, every
validate, train, evaluate, promote, deploy and drift task imported Great Expectations, MLflow,
scikit-learn, skops, pandas and Evidently on its own, several seconds each (``bench/overhead.py``:
2.2 s per task over a plain script without the preload, about 1 s with it).
:func:`sluice.airflow.runtime.home.embedded_env`
sets ``[scheduler] mp_start_method = forkserver`` and ``mp_forkserver_preload`` to this module
(Airflow 3.3's own settings, ``airflow.utils.process_utils.set_component_mp_start_method``): the
forkserver imports it once, the executor's workers are forked from it and each task is forked
from a worker, copy-on-write.

The forkserver is a ``python -c ...`` process, so its ``__main__`` has neither a file nor a
spec, and the executor's workers and their tasks inherit that ``__main__`` when the scheduler
was started as ``python -m airflow``. ``pyspark.sql.connect`` (which Great Expectations imports)
takes such a process for a doctest run and calls ``sys.exit(0)``: the validate task ended with
exit code 0 and no result, three tries in a row. :func:`give_main_a_file` names the
forkserver's own file as ``__main__.__file__`` first, as if it had been started as a script.

Every import is guarded: ``multiprocessing`` only ignores an ``ImportError`` of a preload
module, and anything else (a broken optional dependency, a ``SystemExit``) would kill the
forkserver, after which no worker, so no task, can start.

Only third-party libraries are imported here, never sluice's own modules: they read settings
and the environment when called, and must read them in the task.
"""

from __future__ import annotations

import importlib
import sys
import warnings

#: Imported by the forkserver, in this order (the libraries of the validate, train, deploy and drift tasks).
PRELOADED = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.metrics",
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "skops.io",
    "evidently",
    "evidently.presets",
    "great_expectations",
)


def give_main_a_file() -> None:
    """Give a ``__main__`` that has neither a file nor a spec (``python -c``) the forkserver's file.

    Libraries that inspect ``__main__`` (``pyspark.sql.connect``) then see an ordinary script.
    """
    import multiprocessing.forkserver

    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__"):
        main.__file__ = multiprocessing.forkserver.__file__


def preload(modules: tuple[str, ...] = PRELOADED) -> list[str]:
    """Import ``modules``, skipping (and naming on stderr) any that fails; the ones imported.

    Args:
        modules: Module names, imported in order.
    """
    loaded = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in modules:
            try:
                importlib.import_module(name)
            except (Exception, SystemExit) as exc:
                print(f"sluice preload: {name} not preloaded ({type(exc).__name__}: {exc})", file=sys.stderr)
            else:
                loaded.append(name)
    return loaded


give_main_a_file()
preload()
