"""The model server: the entrypoint the serving image runs and the local target starts.

It serves MLflow's scoring app (``/ping``, ``/health``, ``/version``, ``/invocations``)
plus ``/sluice/info`` (which model version this process serves) on two sockets:

- the public port, opened with ``SO_REUSEPORT`` so a new server can bind it while the
  old one still answers (the kernel spreads connections over both until the old stops);
- a private admin port, so the deployer can health-check *this* process, not whichever
  process the kernel picks on the shared port.
"""

from __future__ import annotations

import gc
import json
import os
import socket
from pathlib import Path


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
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_uri)
    app = scoring_server.init(model)
    facts = {"model_uri": model_uri, "pid": str(os.getpid()), **(info or {})}
    app.get("/sluice/info")(lambda: facts)
    # The loaded model, MLflow and pandas are hundreds of thousands of long-lived objects: out of
    # the collector's reach, a full collection no longer walks them in the middle of a request.
    gc.freeze()
    public = bind(host, port, reuse_port=True)
    admin = bind(host, 0, reuse_port=False)
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"admin_port": admin.getsockname()[1], "pid": os.getpid()}))
        os.replace(tmp, ready_file)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=10))
    server.run(sockets=[public, admin])
