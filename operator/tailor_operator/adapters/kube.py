"""The Kubernetes API: one server-side-apply path for every child, reads, deletes, status."""

from __future__ import annotations

import base64
import copy
import datetime
import json
import logging
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tailor_operator import api, naming
from tailor_operator.ownership import owns_replicas
from tailor_operator.render import Child
from tailor_operator.resource import Pipeline

_log = logging.getLogger("tailor.kube")
# The API server refuses longer Event messages.
_EVENT_MESSAGE_LIMIT = 1024
# Repeats of this many distinct Events are counted on the first one (an LRU).
_EVENTS_REMEMBERED = 4096
# Who posts: the pod's name in a cluster (the Downward API's POD_NAME, else the hostname,
# which a pod's is).
_INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()

# kind -> (path prefix, plural); the children are all namespaced.
_PATHS = {
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "/apis/autoscaling/v2",
        "horizontalpodautoscalers",
    ),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets"),
}


@dataclass(frozen=True)
class Applied:
    """What one apply did: the object as stored, and whether it was created."""

    object: dict[str, Any]
    created: bool


class KubeAdapter:
    """Thread-safe: the kubernetes client is synchronous, so callers run it in threads."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        # (namespace, child key) of Deployments whose spec.replicas Tailor no longer owns.
        self._handed_over: set[tuple[str, str]] = set()
        # Event key -> (name, count) of the Events this process posted, for aggregation.
        self._events: OrderedDict[tuple[str, str, str, str], tuple[str, int]] = OrderedDict()
        self._events_lock = threading.Lock()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """One request; None for 404, ApiException for any other failure."""
        return self._request(method, path, body, query, content_type)[1]

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any] | None]:
        _, url, headers, _, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(
            method,
            url,
            header_params=headers,
            # The client JSON-encodes dict bodies for every JSON and YAML content type.
            body=body,
            _request_timeout=30,
        )
        data = response.read()
        if response.status == 404:
            return 404, None
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return response.status, json.loads(data) if data else {}

    def _path(self, child: Child, namespace: str) -> str:
        prefix, plural = _PATHS[(child.api_version, child.kind)]
        return f"{prefix}/namespaces/{namespace}/{plural}/{child.name}"

    def apply(self, pipeline: Pipeline, child: Child) -> Applied:
        """Server-side apply under Tailor's field manager, owned by the pipeline."""
        assert child.manifest is not None
        key = (pipeline.namespace, child.key)
        if child.replicas_floor is not None and key not in self._handed_over:
            self._hand_over_replicas(pipeline.namespace, child, child.replicas_floor)
        manifest = copy.deepcopy(child.manifest)
        meta = manifest.setdefault("metadata", {})
        meta["namespace"] = pipeline.namespace
        meta["ownerReferences"] = [pipeline.owner_reference()]
        path = self._path(child, pipeline.namespace)
        try:
            code, after = self._server_side_apply(path, manifest)
        except ApiException as exc:
            if not (child.recreate_if_immutable and _immutable(exc)):
                raise
            _log.info("Recreating %s in %s: %s", child.key, pipeline.namespace, api_message(exc))
            self._call("DELETE", path, body={"propagationPolicy": "Background"})
            code, after = self._server_side_apply(path, manifest)
        assert after is not None
        # Server-side apply answers 201 when it created the object.
        created = code == 201
        if child.replicas_floor is None:
            self._handed_over.discard(key)
        elif not owns_replicas(after):
            self._handed_over.add(key)
        return Applied(object=after, created=created)

    def _server_side_apply(
        self, path: str, manifest: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        return self._request(
            "PATCH",
            path,
            body=manifest,
            query=[("fieldManager", naming.FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def _hand_over_replicas(self, namespace: str, child: Child, floor: int) -> None:
        """Before an apply that leaves out spec.replicas (an HPA scales the Deployment now):
        if Tailor still owns the field, server-side apply would reset it to the default of 1,
        so another field manager takes it first, at what is running (at least ``floor``).
        The HPA takes it from there; the Kubernetes docs describe this handover."""
        path = self._path(child, namespace)
        current = self._call("GET", path)
        if current is None or not owns_replicas(current):
            return
        replicas = max(int(current["spec"].get("replicas", 1)), floor)
        try:
            self._call(
                "PATCH",
                path,
                body={
                    "apiVersion": child.api_version,
                    "kind": child.kind,
                    "metadata": {"name": child.name, "namespace": namespace},
                    "spec": {"replicas": replicas},
                },
                query=[("fieldManager", naming.REPLICAS_HANDOVER_MANAGER)],
                content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            # 409: someone (the HPA) changed replicas since the read and owns the field now.
            if exc.status != 409:
                raise

    def delete_stale_config_maps(self, pipeline: Pipeline, keep: set[str]) -> list[str]:
        """Delete the pipeline's settings ConfigMaps not in ``keep``; their names."""
        selector = ",".join(f"{k}={v}" for k, v in naming.selector(pipeline.name, "config").items())
        listed = self._call(
            "GET",
            f"/api/v1/namespaces/{pipeline.namespace}/configmaps",
            query=[("labelSelector", selector)],
        )
        deleted = []
        for item in (listed or {}).get("items", []):
            meta = item["metadata"]
            owned = any(o.get("uid") == pipeline.uid for o in meta.get("ownerReferences") or [])
            if owned and meta["name"] not in keep:
                path = f"/api/v1/namespaces/{pipeline.namespace}/configmaps/{meta['name']}"
                self._call("DELETE", path)
                deleted.append(meta["name"])
        return deleted

    def delete_if_owned(self, pipeline: Pipeline, child: Child) -> bool:
        """Delete a child that must not exist, but only if this pipeline owns it."""
        path = self._path(child, pipeline.namespace)
        current = self._call("GET", path)
        if current is None:
            return False
        owners = current["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == pipeline.uid for o in owners):
            return False
        self._call("DELETE", path, body={"propagationPolicy": "Background"})
        return True

    def list_pods(self, namespace: str, pipeline: str) -> list[dict[str, Any]]:
        """Every pod of the pipeline's workloads (stable and canary), as stored."""
        listed = self._call(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            query=[("labelSelector", f"{naming.PIPELINE_LABEL}={pipeline}")],
        )
        return list((listed or {}).get("items", []))

    # --- the pipeline itself ----------------------------------------------------------------

    def _pipeline_path(self, namespace: str, name: str) -> str:
        return f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{namespace}/{api.PLURAL}/{name}"

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call("GET", self._pipeline_path(namespace, name))

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The pipeline as written; None when it is gone."""
        return self._call(
            "PATCH",
            self._pipeline_path(namespace, name) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The decoded data of a Secret; empty when it does not exist."""
        secret = self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if secret is None:
            return {}
        decoded = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                decoded[key] = base64.b64decode(value).decode()
            except UnicodeDecodeError:
                raise ValueError(
                    f"Secret {namespace}/{name}: key {key!r} is not UTF-8 text"
                ) from None
        return decoded

    def post_event(self, pipeline: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the pipeline, as ``kubectl describe ppl`` shows them. A repeat
        of an Event this process posted (same object, type, reason and message) raises the
        first one's count, as client-go's recorder does, instead of adding another.
        Best effort: a lost Event must never fail or repeat a reconcile."""
        meta = pipeline["metadata"]
        namespace = meta["namespace"]
        message = message[:_EVENT_MESSAGE_LIMIT]
        key = (meta.get("uid") or f"{namespace}/{meta['name']}", type_, reason, message)
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
        try:
            with self._events_lock:
                posted = self._events.pop(key, None)
            if posted is not None:
                name, count = posted
                patch = {"count": count + 1, "lastTimestamp": now}
                if self._call(
                    "PATCH",
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    body=patch,
                    content_type="application/merge-patch+json",
                ):
                    self._remember_event(key, name, count + 1)
                    return
                # Expired (the API server keeps Events an hour): post it afresh.
            created = self._call(
                "POST",
                f"/api/v1/namespaces/{namespace}/events",
                body=_event(pipeline, type_, reason, message, now),
            )
            if created:
                self._remember_event(key, created["metadata"]["name"], 1)
        except Exception as exc:
            _log.warning(
                "Could not post Event %s on %s/%s: %s", reason, namespace, meta["name"], exc
            )

    def _remember_event(self, key: tuple[str, str, str, str], name: str, count: int) -> None:
        with self._events_lock:
            self._events[key] = (name, count)
            while len(self._events) > _EVENTS_REMEMBERED:
                self._events.popitem(last=False)


def api_message(exc: ApiException) -> str:
    """The API server's own message in an error answer (its Status), else the HTTP reason."""
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


def _immutable(exc: ApiException) -> bool:
    return exc.status == 422 and "field is immutable" in api_message(exc)


def _event(
    pipeline: dict[str, Any], type_: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    meta = pipeline["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": pipeline.get("apiVersion", f"{api.GROUP}/{api.VERSION}"),
            "kind": pipeline.get("kind", api.KIND),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": naming.FIELD_MANAGER, "host": _INSTANCE},
        "reportingComponent": naming.FIELD_MANAGER,
        "reportingInstance": _INSTANCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
