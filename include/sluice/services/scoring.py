"""Scoring: an ``/invocations`` request body in, MLflow's response out, for one loaded model.

MLflow's scoring server turns JSON records into a frame with ``pd.DataFrame(records)`` and then
casts every signature column with ``astype``; for the ten rows of an online request that costs
about half as much as the model itself. :class:`Scorer` builds the same frame column by column,
straight into the signature's dtype (float64 for ``double``, object for ``string``, ...), when
the request is the common case: a JSON body of ``dataframe_records`` or ``dataframe_split``
(with ``columns``), no params, every value already of its column's JSON type, and only
signature columns. Everything else (CSV, parquet, ``inputs``/``instances``, params, a null in an
integer column, an unknown column, a model typed by type hints) and every error goes to
MLflow's own ``invocations``, so responses and error messages stay MLflow's byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO
from typing import TYPE_CHECKING, Any

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd
    from mlflow.pyfunc import PyFuncModel

    # Builds one signature column from its JSON values, or raises _NoFastPath.
    _Build = Callable[[list[Any]], npt.NDArray[Any]]

JSON = "application/json"

# JSON value types each signature type takes unchanged (``None`` is a null, allowed where the
# dtype has one); a value of another type sends the request to MLflow's path.
_FLOAT_VALUES = (float, int)
_INT_VALUES = (int,)
_BOOL_VALUES = (bool,)
_STR_VALUES = (str,)


@dataclass(frozen=True)
class Response:
    """What the HTTP layer sends back."""

    status: int
    body: str
    media_type: str


def _floats(dtype: Any) -> _Build:
    import numpy as np

    def build(values: list[Any]) -> npt.NDArray[Any]:
        if not all(v is None or type(v) in _FLOAT_VALUES for v in values):
            raise _NoFastPath
        # Through float64 like pandas' inference then astype, so float32 rounds the same way.
        return np.array(values, dtype=np.float64).astype(dtype, copy=False)

    return build


def _ints(dtype: Any) -> _Build:
    import numpy as np

    def build(values: list[Any]) -> npt.NDArray[Any]:
        if not all(type(v) in _INT_VALUES for v in values):
            raise _NoFastPath
        return np.array(values, dtype=np.int64).astype(dtype, copy=False)

    return build


def _bools(values: list[Any]) -> npt.NDArray[np.bool_]:
    import numpy as np

    if not all(type(v) in _BOOL_VALUES for v in values):
        raise _NoFastPath
    return np.array(values, dtype=bool)


def _strings(values: list[Any]) -> npt.NDArray[np.object_]:
    import numpy as np

    if not all(v is None or type(v) in _STR_VALUES for v in values):
        raise _NoFastPath
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _column_plans(model: PyFuncModel) -> dict[str, _Build] | None:
    """Per signature column, how to build it; None when the model's signature has no fast path."""
    import numpy as np
    from mlflow.types.schema import DataType

    metadata = model.metadata
    schema = metadata.get_input_schema()
    from_type_hint = getattr(metadata, "_is_signature_from_type_hint", lambda: False)()
    if schema is None or from_type_hint or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    if metadata.get_params_schema() is not None:
        return None
    builders: dict[Any, _Build] = {
        DataType.double: _floats(np.float64),
        DataType.float: _floats(np.float32),
        DataType.long: _ints(np.int64),
        DataType.integer: _ints(np.int32),
        DataType.boolean: _bools,
        DataType.string: _strings,
    }
    plans: dict[str, _Build] = {}
    for name, kind in zip(schema.input_names(), schema.input_types(), strict=True):
        if not isinstance(kind, DataType) or kind not in builders:
            return None
        plans[str(name)] = builders[kind]
    return plans


class _NoFastPath(Exception):
    """The request is not the common case: MLflow's path handles it."""


class Scorer:
    """Answers ``/invocations`` requests for one loaded pyfunc model.

    Args:
        model: The loaded model (``mlflow.pyfunc.load_model``).
    """

    def __init__(self, model: PyFuncModel) -> None:
        self.model = model
        self._schema = model.metadata.get_input_schema()
        self._plans = _column_plans(model)
        self.fast = 0
        self.fallback = 0

    def __call__(self, body: bytes, content_type: str | None) -> Response:
        """Score one request.

        Args:
            body: The raw request body.
            content_type: The request's ``Content-Type`` header.

        Returns:
            The status, body and media type MLflow's scoring server would send.

        Raises:
            mlflow.exceptions.MlflowException: As MLflow's ``invocations`` raises it (a bad
                payload, a failed prediction); the HTTP layer turns it into MLflow's error body.
        """
        if self._plans is not None and _is_plain_json(content_type):
            try:
                frame = self._frame(body)
                predictions = self.model.predict(frame, params=None)
            except Exception as exc:  # any surprise: MLflow's path answers, with its own errors
                _log.debug("MLflow's path scores this request: %r", exc)
            else:
                self.fast += 1
                return Response(200, _predictions_json(predictions), JSON)
        self.fallback += 1
        return self._mlflow(body, content_type)

    def _mlflow(self, body: bytes, content_type: str | None) -> Response:
        from mlflow.pyfunc import scoring_server

        result = scoring_server.invocations(body, content_type or "", self.model, self._schema)
        return Response(result.status, result.response, result.mimetype)

    def _frame(self, body: bytes) -> pd.DataFrame:
        """The request's frame, exactly as MLflow would build it, or :class:`_NoFastPath`."""
        import json

        import pandas as pd

        payload = json.loads(body)
        if not isinstance(payload, dict) or len(payload) != 1:
            raise _NoFastPath
        ((key, data),) = payload.items()
        if key == "dataframe_records":
            columns, values = _records(data)
        elif key == "dataframe_split":
            columns, values = _split(data)
        else:
            raise _NoFastPath
        assert self._plans is not None
        plans = self._plans
        if len(set(columns)) != len(columns) or not all(c in plans for c in columns):
            raise _NoFastPath
        return pd.DataFrame({c: plans[c](v) for c, v in zip(columns, values, strict=True)}, copy=False)


def _records(data: Any) -> tuple[list[str], list[list[Any]]]:
    """Column names and values of ``dataframe_records`` whose rows all have the same keys."""
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise _NoFastPath
    columns = list(data[0])
    if any(len(r) != len(columns) for r in data):
        raise _NoFastPath
    try:
        return columns, [[r[c] for r in data] for c in columns]
    except KeyError:  # rows with other keys: pandas' union of keys and NaN fill, on MLflow's path
        raise _NoFastPath from None


def _split(data: Any) -> tuple[list[str], list[list[Any]]]:
    """Column names and values of ``dataframe_split`` with ``columns`` and no ``index``."""
    if not isinstance(data, dict) or set(data) != {"columns", "data"}:
        raise _NoFastPath
    columns, rows = data["columns"], data["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _NoFastPath
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
        raise _NoFastPath
    return columns, [list(col) for col in zip(*rows, strict=True)]


def _is_plain_json(content_type: str | None) -> bool:
    """``application/json``, with at most ``charset=utf-8``."""
    if not content_type:
        return False
    mime, *params = (part.strip() for part in content_type.split(";"))
    return mime == JSON and all(p.replace(" ", "").lower() == "charset=utf-8" for p in params)


def _predictions_json(predictions: Any) -> str:
    from mlflow.pyfunc import scoring_server

    out = StringIO()
    scoring_server.predictions_to_json(predictions, out)
    return out.getvalue()
