"""A Kubernetes API emulator over HTTP (kmock) plus a small test-side stand-in for the kubelet.

What is real: the HTTP API the unmodified ``kubernetes`` / ``kubernetes_asyncio`` clients
talk to (kmock's ``KubernetesEmulator`` holds the objects in memory and serves create,
get, list, watch, patch and delete), the KubernetesPodOperator, and the deployer, which
runs as a real ``sluice deployer`` process.

What the test supplies, because no kubelet, scheduler or controller manager exists here:

- :class:`ClusterEmulator` adds to kmock what the code under test relies on: server-side
  apply creating an object that does not exist yet, ``metadata.generation`` bumped on
  spec changes, ``resourceVersion``/``uid``/``creationTimestamp``, a new pod's ``Pending``
  phase, label and field selectors on lists. Server-side apply is emulated as a merge (no field ownership or conflicts).
- :class:`Kubelet` plays kubelet and Deployment controller: a pod it sees is "run" by
  executing its container's command and arguments as a local process (environment from
  the pod spec, plus ``KUBECONFIG`` pointing at the emulator instead of the in-cluster
  service account), its phase and container state are patched through the API, and its
  output is served on ``/pods/<name>/log``. A Deployment's status follows its spec at once,
  except for model versions the test marks as never becoming ready.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import kmock
from kmock._internal import dicts as kmock_dicts

from sluice.services.kube_manifests import LABEL_VERSION

RESOURCES = ("v1/pods", "v1/services", "v1/events", "v1/namespaces", "apps/v1/deployments")


def _now() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector_matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_matches(obj: dict[str, Any], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        path, value = term.split("=", 1)
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if str(node) != value:
            return False
    return True


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API-server behaviour the deploy code relies on."""

    logs: dict[tuple[str, str], str] = attrs.field(factory=dict)
    _rv: int = attrs.field(default=0)

    def _stamp_new(self, data: dict[str, Any]) -> dict[str, Any]:
        data = copy.deepcopy(data)
        meta = data.setdefault("metadata", {})
        self._rv += 1
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=str(self._rv), generation=1)
        if data.get("kind") == "Pod":
            # The API server answers a new pod with phase Pending; the pod operator's trigger,
            # polling before the kubelet has seen the pod, fails on a pod with no status.
            data.setdefault("status", {}).setdefault("phase", "Pending")
        return data

    def _evolve(self, request: kmock.Request, **changes: Any) -> kmock.Request:
        # kmock routes a request by identity among those it recorded: swap the record too.
        new = attrs.evolve(request, **changes)
        for i, seen in enumerate(self._requests):
            if seen is request:
                self._requests[i] = new
        return new

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                request = self._evolve(request, data=self._stamp_new(request.data))
            elif request.action == kmock.action.UPDATE and request.name is not None:
                key = (request.resource, request.namespace, request.name)
                exists = key in self.objects and not self.objects[key].deleted
                if not exists and "apply-patch" in request.headers.get("Content-Type", ""):
                    # Server-side apply creates what does not exist yet.
                    request = self._evolve(request, action=kmock.action.CREATE, data=self._stamp_new(request.data))
                elif exists:
                    old = copy.deepcopy(self.objects[key].raw)
                    merged = kmock_dicts.patch_dict(copy.deepcopy(old), request.data)
                    if merged != old:
                        data = copy.deepcopy(request.data)
                        meta = data.setdefault("metadata", {})
                        self._rv += 1
                        meta["resourceVersion"] = str(self._rv)
                        if request.subresource is None and merged.get("spec") != old.get("spec"):
                            meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1
                        request = self._evolve(request, data=data)
        return await super()._handle(request)

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        labels, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        result["items"] = [
            o
            for o in result["items"]
            if _selector_matches((o.get("metadata") or {}).get("labels") or {}, labels) and _field_matches(o, fields)
        ]
        return result

    async def _serve_log(self, request: kmock.Request) -> bytes:
        return self.logs.get((str(request.namespace), str(request.name)), "").encode()


class Cluster:
    """The emulator on a local port, run by an event loop in a background thread."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kmock", daemon=True)
        self.emulator: ClusterEmulator
        self.server: kmock.Server
        self.url = ""
        self.kubeconfig = workdir / "kubeconfig.yaml"

    def _call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.emulator = ClusterEmulator()
        for res in RESOURCES:
            self.emulator.resources[res] = {}
        self.emulator["get", re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log")] << self.emulator._serve_log
        await self.emulator.__aenter__()
        self.server = kmock.Server(self.emulator)
        await self.server.__aenter__()
        self.url = str(self.server.url).rstrip("/")

    async def _stop(self) -> None:
        await self.server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    def __enter__(self) -> Cluster:
        self.thread.start()
        self._call(self._start())
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "sluice-test", "user": {"token": "emulator"}}],
                    "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "sluice-test"}}],
                    "current-context": "kmock",
                }
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    # ------------------------------------------------------------------ inspection

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Live objects of a resource (e.g. 'apps/v1/deployments'), as stored."""

        async def grab() -> list[dict[str, Any]]:
            out = []
            for (res, ns, _), obj in list(self.emulator.objects.items()):
                if res == kmock.resource(plural) and not obj.deleted and namespace in (None, ns):
                    out.append(copy.deepcopy(obj.raw))
            return out

        return list(self._call(grab()))

    def writes(self, plural: str) -> list[tuple[str, str]]:
        """(method, path) of every create/patch/delete of a resource so far, status updates excluded."""
        res = kmock.resource(plural)
        return [
            (str(r.method.value).upper(), r.url.path)
            for r in list(self.emulator._requests)
            if r.resource == res
            and r.subresource != "status"
            and r.action in (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
        ]


class Kubelet:
    """Moves pods through their phases by running them locally; drives Deployment status."""

    def __init__(self, cluster: Cluster, bin_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        from sluice.services.kubernetes import connect

        self.cluster = cluster
        self.api = connect(str(cluster.kubeconfig))
        self.bin_dir = bin_dir
        self.extra_env = extra_env or {}
        self.unready_versions: set[str] = set()
        self.ran: list[dict[str, Any]] = []
        self._procs: dict[tuple[str, str], subprocess.Popen[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for proc in self._procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def _get(self, path: str) -> dict[str, Any]:
        resp = self.api.call_api(path, "GET", _preload_content=False, auth_settings=["BearerToken"])
        return dict(json.loads(resp.data))

    def _patch_status(self, path: str, status: dict[str, Any]) -> None:
        self.api.call_api(
            f"{path}/status",
            "PATCH",
            body={"status": status},
            header_params={"Content-Type": "application/merge-patch+json"},
            _preload_content=False,
            auth_settings=["BearerToken"],
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync_pods()
                self._sync_deployments()
            except Exception as exc:
                self.errors.append(repr(exc))
            time.sleep(0.2)

    # -- pods: run the container's command, report its phase, keep its log

    def _sync_pods(self) -> None:
        for pod in self._get("/api/v1/pods")["items"]:
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            path = f"/api/v1/namespaces/{key[0]}/pods/{key[1]}"
            phase = (pod.get("status") or {}).get("phase")
            if key not in self._procs and phase in (None, "Pending"):
                self._start_pod(pod, key, path)
            proc = self._procs.get(key)
            if proc is not None and phase == "Running" and proc.poll() is not None:
                self._finish_pod(pod, key, path, proc)

    def _start_pod(self, pod: dict[str, Any], key: tuple[str, str], path: str) -> None:
        container = pod["spec"]["containers"][0]
        cmd = [*container.get("command", []), *container.get("args", [])]
        exe = shutil.which(cmd[0], path=str(self.bin_dir)) or cmd[0]
        env = dict(os.environ)
        env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
        env.update(self.extra_env, KUBECONFIG=str(self.cluster.kubeconfig))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.ran.append(pod)
        self._procs[key] = subprocess.Popen(
            [exe, *cmd[1:]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started = _now()
        self._patch_status(
            path,
            {
                "phase": "Running",
                "startTime": started,
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            },
        )

    def _finish_pod(self, pod: dict[str, Any], key: tuple[str, str], path: str, proc: Any) -> None:
        out = proc.stdout.read() if proc.stdout else ""
        stamp = dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.cluster.emulator.logs[key] = "".join(f"{stamp} {line}\n" for line in out.splitlines())
        code = proc.returncode
        container = pod["spec"]["containers"][0]
        self._patch_status(
            path,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "reason": "Completed" if code == 0 else "Error",
                                "startedAt": pod["status"].get("startTime"),
                                "finishedAt": _now(),
                            }
                        },
                    }
                ],
            },
        )

    def log_of(self, namespace: str, name: str) -> str:
        """The captured log of a pod."""
        return self.cluster.emulator.logs.get((namespace, name), "")

    # -- deployments: status follows spec, unless the version never becomes ready

    def _sync_deployments(self) -> None:
        for dep in self._get("/apis/apps/v1/deployments")["items"]:
            meta, spec = dep["metadata"], dep["spec"]
            status = dep.get("status") or {}
            generation = int(meta.get("generation", 1))
            if int(status.get("observedGeneration", 0)) >= generation:
                continue
            want = int(spec.get("replicas", 1))
            version = spec["template"]["metadata"]["labels"].get(LABEL_VERSION)
            path = f"/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}"
            if version in self.unready_versions:
                serving = int(status.get("availableReplicas") or 0)
                new = {
                    "observedGeneration": generation,
                    "replicas": serving + 1,
                    "updatedReplicas": 1,
                    "readyReplicas": serving,
                    "availableReplicas": serving,
                    "unavailableReplicas": 1,
                    "conditions": [
                        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
                        {"type": "Available", "status": "True" if serving else "False"},
                    ],
                }
            else:
                new = {
                    "observedGeneration": generation,
                    "replicas": want,
                    "updatedReplicas": want,
                    "readyReplicas": want,
                    "availableReplicas": want,
                    "unavailableReplicas": None,
                    "conditions": [
                        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                        {"type": "Available", "status": "True"},
                    ],
                }
            self._patch_status(path, new)


def venv_bin() -> Path:
    """Folder of the ``sluice`` console script of this interpreter."""
    return Path(sys.executable).parent


# Schema versions every manifest is validated against (kubernetes-validate, strict): the newest
# release and the oldest one still commonly run by managed clusters.
KUBERNETES_VERSIONS = ("1.37.0", "1.35.0")


def kubernetes_spec(tracking_uri: str = "http://mlflow.mlops.svc:5000", **settings: Any) -> dict[str, Any]:
    """The demo spec with ``deployment.target: kubernetes``."""
    from tests.conftest import demo_spec_dict

    spec = demo_spec_dict()
    spec["deployment"] = {
        "target": "kubernetes",
        "kubernetes": {
            "namespace": "ml-serving",
            "image": "registry.example.com/sluice:0.1.0",
            "serving_image": "registry.example.com/sluice-serving:0.1.0",
            "mlflow_tracking_uri": tracking_uri,
            "labels": {"team": "data-eng"},
            **settings,
        },
    }
    return spec


def dead_kubeconfig(folder: Path) -> Path:
    """A kubeconfig whose API server is a free port where nothing listens (a cluster that is down)."""
    from tests.conftest import free_port

    path = folder / "dead-kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(config))
    return path
