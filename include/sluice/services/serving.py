"""The model server: the entrypoint the serving image runs and the local target starts.

It serves MLflow's scoring protocol (``/ping``, ``/health``, ``/version``, ``/invocations``,
answered as MLflow's scoring server answers them, see :mod:`sluice.services.scoring`) plus
``/sluice/info`` (which model version this process serves, the prediction log's counts) and
``/metrics`` (Prometheus, :mod:`sluice.services.serving_metrics`) on two sockets:

- the public port, opened with ``SO_REUSEPORT`` so a new server can bind it while the
  old one still answers (the kernel spreads connections over both until the old stops);
- a private admin port, so the deployer can health-check *this* process, not whichever
  process the kernel picks on the shared port.

Every ``/invocations`` answer carries ``X-Request-ID`` (the caller's, or one made up); with
a pipeline store, each answered request goes to the prediction log
(:mod:`sluice.services.prediction_log`) off the request path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.services.scoring import JSON

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from sluice.services.prediction_log import PredictionLog
    from sluice.services.scoring import Scorer
    from sluice.services.serving_metrics import ServerMetrics

#: The header that names a request (echoed back; made up when the caller sends none).
REQUEST_ID = "X-Request-ID"


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """Open a listening TCP socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def app(model: Any, facts: dict[str, str], timeout: float, log: PredictionLog | None = None) -> Any:
    """The ASGI app: MLflow's scoring endpoints over :class:`~sluice.services.scoring.Scorer`.

    One scoring thread: threads fighting for the GIL cost each request more CPU than they
    overlap. Requests wait in the event loop instead, which keeps answering ``/ping``.

    Args:
        model: The loaded pyfunc model.
        facts: What ``/sluice/info`` returns (``pipeline`` and ``version`` label the metrics).
        timeout: Seconds a prediction may take before the request gets 504 (MLflow's
            ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``).
        log: Where answered requests are logged (started and flushed with the app), or None.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.version import VERSION
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from sluice.services.scoring import Scorer
    from sluice.services.serving_metrics import ServerMetrics

    scorer = Scorer(model)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
    metrics = ServerMetrics(facts.get("pipeline", ""), facts.get("version", ""), log)
    invocations = _invocations(scorer, executor, metrics, log, timeout)

    async def ping(request: Request) -> Response:
        return Response("\n", media_type=JSON)

    async def version(request: Request) -> Response:
        return Response(VERSION, media_type=JSON)

    async def info(request: Request) -> Response:
        logged = dataclasses.asdict(log.stats) if log is not None else None
        return JSONResponse(
            {**facts, "fast_requests": scorer.fast, "mlflow_requests": scorer.fallback, "prediction_log": logged}
        )

    async def scrape(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if log is not None:
            log.start()
        yield
        executor.shutdown(wait=False, cancel_futures=True)
        if log is not None:
            log.close()

    paths = {"/ping": ping, "/health": ping, "/version": version, "/sluice/info": info, "/metrics": scrape}
    routes = [Route(path, endpoint) for path, endpoint in paths.items()]
    return Starlette(routes=[*routes, Route("/invocations", invocations, methods=["POST"])], lifespan=lifespan)


def _invocations(
    scorer: Scorer, executor: Executor, metrics: ServerMetrics, log: PredictionLog | None, timeout: float
) -> Any:
    """The ``/invocations`` endpoint: score on the one scoring thread, count, log, name the request."""
    import asyncio

    from mlflow.exceptions import MlflowException
    from starlette.requests import Request
    from starlette.responses import Response

    from sluice.services.prediction_log import Scored

    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        body = await request.body()
        content_type = request.headers.get("content-type")
        call = asyncio.get_running_loop().run_in_executor(executor, scorer, body, content_type)
        try:
            result = await asyncio.wait_for(call, timeout)
            answer = Response(result.body, status_code=result.status, media_type=result.media_type)
        except TimeoutError:
            answer = Response("Request processing time exceeded limit", status_code=504, media_type=JSON)
        except MlflowException as exc:
            answer = Response(exc.serialize_as_json(), status_code=exc.get_http_status_code(), media_type=JSON)
        answer.headers[REQUEST_ID] = request_id
        if log is not None and answer.status_code == 200:
            log.record(Scored(request_id, time.time(), body, content_type, result.body))
        metrics.observe(answer.status_code, time.perf_counter() - started)
        return answer

    return invocations


def serve(
    model_uri: str,
    host: str,
    port: int,
    ready_file: Path | None = None,
    info: dict[str, str] | None = None,
    storage_root: str | None = None,
    id_column: str | None = None,
) -> None:
    """Load ``model_uri`` and serve it until SIGTERM (which flushes the prediction log).

    Args:
        model_uri: An MLflow model URI pinned to a version (``models:/name/3``).
        host: Interface of both sockets.
        port: Public port (shared with the previous server during a switch).
        ready_file: Written with ``{"admin_port", "pid"}`` once the model is loaded.
        info: Extra facts returned by ``/sluice/info`` (pipeline, version).
        storage_root: The spec's ``storage.root`` (a local folder or ``s3://``; an object
            store's credentials come from the AWS environment): the prediction log goes to
            ``<root>/<pipeline>/predictions/log/``. None: no log.
        id_column: The spec's ``source.id_column``, logged with each row.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow.pyfunc
    import uvicorn
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    model = mlflow.pyfunc.load_model(model_uri)
    facts = {"model_uri": model_uri, "pid": str(os.getpid()), **(info or {})}
    log = _prediction_log(storage_root, facts, id_column) if storage_root else None
    asgi = app(model, facts, float(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()), log)
    # The loaded model, MLflow and pandas are hundreds of thousands of long-lived objects: out of
    # the collector's reach, a full collection no longer walks them in the middle of a request.
    gc.freeze()
    public = bind(host, port, reuse_port=True)
    admin = bind(host, 0, reuse_port=False)
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"admin_port": admin.getsockname()[1], "pid": os.getpid()}))
        os.replace(tmp, ready_file)
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="info", timeout_graceful_shutdown=10))
    server.run(sockets=[public, admin])


def _prediction_log(storage_root: str, facts: dict[str, str], id_column: str | None) -> PredictionLog:
    from sluice.services.prediction_log import PredictionLog
    from sluice.services.storage import PipelineStore
    from sluice.settings import settings

    pipeline = facts.get("pipeline")
    if not pipeline:
        raise ValueError("a prediction log (storage_root) needs the pipeline's name (--pipeline)")
    env = settings()
    return PredictionLog(
        PipelineStore(storage_root, pipeline),
        pipeline,
        facts.get("version", ""),
        id_column,
        flush_rows=env.prediction_log_flush_rows,
        flush_seconds=env.prediction_log_flush_seconds,
        max_rows=env.prediction_log_buffer_rows,
    )
