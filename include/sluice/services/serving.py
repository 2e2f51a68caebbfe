"""The model server: the entrypoint the serving image runs and the local target starts.

It serves MLflow's scoring protocol (``/ping``, ``/health``, ``/version``, ``/invocations``,
answered as MLflow's scoring server answers them, see :mod:`sluice.services.scoring`) plus
``/sluice/info`` (which model version this process serves) on two sockets:

- the public port, opened with ``SO_REUSEPORT`` so a new server can bind it while the
  old one still answers (the kernel spreads connections over both until the old stops);
- a private admin port, so the deployer can health-check *this* process, not whichever
  process the kernel picks on the shared port.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


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


def app(model: Any, facts: dict[str, str], timeout: float) -> Any:
    """The ASGI app: MLflow's scoring endpoints over :class:`~sluice.services.scoring.Scorer`.

    One scoring thread: threads fighting for the GIL cost each request more CPU than they
    overlap. Requests wait in the event loop instead, which keeps answering ``/ping``.

    Args:
        model: The loaded pyfunc model.
        facts: What ``/sluice/info`` returns.
        timeout: Seconds a prediction may take before the request gets 504 (MLflow's
            ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``).
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.exceptions import MlflowException
    from mlflow.version import VERSION
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from sluice.services.scoring import JSON, Scorer

    scorer = Scorer(model)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")

    async def ping(request: Request) -> Response:
        return Response("\n", media_type=JSON)

    async def version(request: Request) -> Response:
        return Response(VERSION, media_type=JSON)

    async def info(request: Request) -> Response:
        return JSONResponse({**facts, "fast_requests": scorer.fast, "mlflow_requests": scorer.fallback})

    async def invocations(request: Request) -> Response:
        body = await request.body()
        call = asyncio.get_running_loop().run_in_executor(executor, scorer, body, request.headers.get("content-type"))
        try:
            result = await asyncio.wait_for(call, timeout)
        except TimeoutError:
            return Response("Request processing time exceeded limit", status_code=504, media_type=JSON)
        except MlflowException as exc:
            return Response(exc.serialize_as_json(), status_code=exc.get_http_status_code(), media_type=JSON)
        return Response(result.body, status_code=result.status, media_type=result.media_type)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    paths = {"/ping": ping, "/health": ping, "/version": version, "/sluice/info": info}
    routes = [Route(path, endpoint) for path, endpoint in paths.items()]
    return Starlette(routes=[*routes, Route("/invocations", invocations, methods=["POST"])], lifespan=lifespan)


def serve(
    model_uri: str, host: str, port: int, ready_file: Path | None = None, info: dict[str, str] | None = None
) -> None:
    """Load ``model_uri`` and serve it until SIGTERM.

    Args:
        model_uri: An MLflow model URI pinned to a version (``models:/name/3``).
        host: Interface of both sockets.
        port: Public port (shared with the previous server during a switch).
        ready_file: Written with ``{"admin_port", "pid"}`` once the model is loaded.
        info: Extra facts returned by ``/sluice/info`` (pipeline, version).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow.pyfunc
    import uvicorn
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    model = mlflow.pyfunc.load_model(model_uri)
    facts = {"model_uri": model_uri, "pid": str(os.getpid()), **(info or {})}
    asgi = app(model, facts, float(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()))
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
