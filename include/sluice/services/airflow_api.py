"""Airflow's REST API as an outside caller sees it (``apache-airflow-client``).

For monitors that run outside Airflow and only have HTTP: log in, then post an asset
event that starts the pipelines scheduled on that asset.
"""

from __future__ import annotations

from typing import Any


def login(api_url: str, username: str, password: str, timeout: float = 30) -> str:
    """A JWT from SimpleAuthManager's ``POST /auth/token``.

    Raises:
        RuntimeError: The server refused the credentials (with its status and message).
    """
    import requests

    resp = requests.post(
        f"{api_url.rstrip('/')}/auth/token", json={"username": username, "password": password}, timeout=timeout
    )
    if resp.status_code >= 400:
        raise RuntimeError(f"login to {api_url} as {username!r} failed: HTTP {resp.status_code} {resp.text[:200]}")
    return str(resp.json()["access_token"])


def post_asset_event(api_url: str, token: str, uri: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Post an asset event on the asset ``uri``; return the event as the API recorded it.

    Raises:
        LookupError: No asset has that URI (no DAG that uses it has been parsed yet).
    """
    import airflow_client.client as af

    config = af.Configuration(host=api_url.rstrip("/"), access_token=token)
    with af.ApiClient(config) as api:
        assets = af.AssetApi(api)
        matches = [a for a in assets.get_assets(uri_pattern=uri).assets if a.uri == uri]
        if not matches:
            raise LookupError(f"no asset {uri} on {api_url}: is the pipeline's DAG file loaded?")
        event = assets.create_asset_event(af.CreateAssetEventsBody(asset_id=matches[0].id, extra=extra))
        return {"id": event.id, "asset_id": event.asset_id, "uri": event.uri, "extra": event.extra}
