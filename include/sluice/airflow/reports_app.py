"""The sluice plugin's web app: serves report files so a task link opens them in one click.

Mounted on the Airflow API server under ``/sluice`` (``plugins/sluice_plugin.py``):
``GET /sluice/reports/<pipeline>/<path>`` returns a file (or a folder listing) from that
pipeline's storage folder (``<storage.root>/<pipeline>``, from the specs in the DAGs folder),
and nothing outside it. Airflow's own login protects it: the UI's session cookie (or a bearer
token) is required. HTML reports are sandboxed (``Content-Security-Policy: sandbox``) so their
scripts run in an opaque origin and cannot reach the Airflow API with the user's session.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

SANDBOX = "sandbox allow-scripts allow-popups"


def pipeline_roots(dags_folder: str | Path) -> dict[str, Path]:
    """``{pipeline: storage folder}`` of every loadable spec in ``dags_folder``."""
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_folder

    roots = {}
    for loaded in load_folder(dags_folder).specs:
        store = PipelineStore(loaded.resolve(loaded.spec.storage.root), loaded.spec.pipeline)
        roots[loaded.spec.pipeline] = store.base
    return roots


def resolve_report(roots: dict[str, Path], pipeline: str, path: str) -> Path:
    """The file or folder ``path`` inside ``pipeline``'s storage; 404 for anything else."""
    base = roots.get(pipeline)
    if base is None:
        raise HTTPException(404, f"no pipeline named {pipeline!r} in the DAGs folder")
    base = base.resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base) or not target.exists():
        raise HTTPException(404, f"no report {path!r} for pipeline {pipeline!r}")
    return target


def _listing(pipeline: str, base: Path, folder: Path) -> HTMLResponse:
    rel = folder.relative_to(base).as_posix()
    prefix = "" if rel == "." else rel + "/"
    rows = []
    for p in sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
        if p.name.startswith("."):
            continue
        slash = "/" if p.is_dir() else ""
        rows.append(f'<li><a href="{quote(p.name)}{slash}">{html.escape(p.name)}{slash}</a></li>')
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
        roots = pipeline_roots(folder())
        target = resolve_report(roots, pipeline, path)
        if target.is_dir():
            return _listing(pipeline, roots[pipeline].resolve(), target)
        media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        headers = {"Content-Security-Policy": SANDBOX} if media == "text/html" else {}
        return FileResponse(target, media_type=media, headers=headers)

    return app
