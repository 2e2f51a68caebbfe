"""The sluice plugin's web app: serves report files so a task link opens them in one click.

Mounted on the Airflow API server under ``/sluice`` (``plugins/sluice_plugin.py``):
``GET /sluice/reports/<pipeline>/<key>`` returns a file (or a folder listing) from that
pipeline's storage (the store of each spec in the DAGs folder, local or object storage),
and nothing outside it. Airflow's own login protects it: the UI's session cookie (or a bearer
token) is required. HTML reports are sandboxed (``Content-Security-Policy: sandbox``) so their
scripts run in an opaque origin and cannot reach the Airflow API with the user's session.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore

SANDBOX = "sandbox allow-scripts allow-popups"


def pipeline_stores(dags_folder: str | Path) -> dict[str, PipelineStore]:
    """``{pipeline: store}`` of every loadable spec in ``dags_folder``."""
    from sluice.airflow.runtime.connections import open_pipeline_store
    from sluice.spec.loader import load_folder

    return {loaded.spec.pipeline: open_pipeline_store(loaded) for loaded in load_folder(dags_folder).specs}


def report_key(stores: dict[str, PipelineStore], pipeline: str, path: str) -> tuple[PipelineStore, str]:
    """The store and key of ``path`` inside ``pipeline``'s storage; 404 for anything else."""
    store = stores.get(pipeline)
    if store is None:
        raise HTTPException(404, f"no pipeline named {pipeline!r} in the DAGs folder")
    key = path.strip("/")
    parts = key.split("/") if key else []
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts) or not store.exists(key):
        raise HTTPException(404, f"no report {path!r} for pipeline {pipeline!r}")
    return store, key


def _listing(pipeline: str, store: PipelineStore, key: str) -> HTMLResponse:
    prefix = key + "/" if key else ""
    names = sorted(store.ls(key), key=lambda n: (not n.endswith("/"), n))
    rows = [f'<li><a href="{quote(n)}">{html.escape(n)}</a></li>' for n in names]
    page = f"<html><body><h2>{html.escape(f'{pipeline}/{prefix}')}</h2><ul>{''.join(rows)}</ul></body></html>"
    return HTMLResponse(page, headers={"Content-Security-Policy": SANDBOX})


def create_app(dags_folder: str | Path | None = None, *, authenticate: bool = True) -> FastAPI:
    """The FastAPI app of the plugin.

    Args:
        dags_folder: Where the specs are; default Airflow's ``[core] dags_folder`` at request time.
        authenticate: Require an Airflow user (session cookie or bearer token).
    """
    dependencies = []
    if authenticate:
        from airflow.api_fastapi.core_api.security import get_user

        dependencies.append(Depends(get_user))
    app = FastAPI(title="sluice", description="Reports of sluice pipelines", dependencies=dependencies)

    def folder() -> str | Path:
        if dags_folder is not None:
            return dags_folder
        from airflow.configuration import conf

        return conf.get("core", "dags_folder")

    @app.get("/reports/{pipeline}/{path:path}", response_model=None)
    def report(pipeline: str, path: str) -> Response:
        """A report file (validation JSON, drift HTML, decision record...) or a folder listing."""
        store, key = report_key(pipeline_stores(folder()), pipeline, path)
        if store.backend.is_folder(key):
            return _listing(pipeline, store, key)
        media = mimetypes.guess_type(key)[0] or "application/octet-stream"
        headers = {"Content-Security-Policy": SANDBOX} if media == "text/html" else {}
        return Response(store.read_bytes(key), media_type=media, headers=headers)

    return app
