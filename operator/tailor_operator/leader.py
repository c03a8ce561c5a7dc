"""Leader election on a coordination.k8s.io Lease: one active operator replica, others wait.

The decision is pure (``lease_decision``); ``LeaseElector`` only reads and writes the Lease
with optimistic concurrency, so two replicas can never both believe they hold it.

Expiry is measured as client-go measures it: from the moment this replica last saw the
Lease record change, on its own monotonic clock. The holder's ``renewTime`` comes from the
holder's clock, so comparing it with ours would let a standby with a clock running ahead
take a live lease.
"""

from __future__ import annotations

import datetime
import http.server
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

_log = logging.getLogger("tailor.leader")

Decision = Literal["acquire", "renew", "wait"]


def lease_decision(spec: Mapping[str, Any], identity: str, unchanged_seconds: float) -> Decision:
    """What a candidate should do with a Lease whose spec it just read.
    ``unchanged_seconds``: how long, on this replica's clock, the record has looked exactly
    like this (0 when it just changed or was first seen)."""
    holder = spec.get("holderIdentity")
    if holder == identity:
        return "renew"
    if not holder:
        return "acquire"
    duration = float(spec.get("leaseDurationSeconds") or 0)
    if unchanged_seconds >= duration:
        return "acquire"
    return "wait"


def lease_record(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies one renewal: a holder that renews writes a new renewTime."""
    return (
        spec.get("holderIdentity"),
        spec.get("renewTime"),
        spec.get("acquireTime"),
        spec.get("leaseDurationSeconds"),
    )


def _micro_time(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseElector:
    api: client.CoordinationV1Api
    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_seconds: float = 5.0
    clock: Callable[[], float] = time.monotonic
    # The record last read and when (self.clock) it was first read like that.
    _observed: tuple[Any, ...] | None = field(default=None, init=False)
    _observed_at: float = field(default=0.0, init=False)

    def _unchanged_seconds(self, spec: Mapping[str, Any]) -> float:
        record, now = lease_record(spec), self.clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        return now - self._observed_at

    def try_hold(self) -> bool:
        """Acquire or renew once; True while this replica is the leader."""
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec.to_dict() if lease.spec else {}
        camel = {
            "holderIdentity": spec.get("holder_identity"),
            "renewTime": _as_text(spec.get("renew_time")),
            "acquireTime": _as_text(spec.get("acquire_time")),
            "leaseDurationSeconds": spec.get("lease_duration_seconds"),
        }
        decision = lease_decision(camel, self.identity, self._unchanged_seconds(camel))
        if decision == "wait":
            return False
        body: dict[str, Any] = {
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "renewTime": _micro_time(now),
            },
        }
        if decision == "acquire":
            body["spec"]["acquireTime"] = _micro_time(now)
            body["spec"]["leaseTransitions"] = int(spec.get("lease_transitions") or 0) + 1
        try:
            # A merge patch carrying resourceVersion fails with 409 if anyone wrote first.
            self.api.patch_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        if decision == "acquire":
            _log.info("Acquired the lease %s/%s as %s", self.namespace, self.name, self.identity)
        return True

    def _create(self, now: datetime.datetime) -> bool:
        body = {
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            self.api.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        _log.info(
            "Created and acquired the lease %s/%s as %s", self.namespace, self.name, self.identity
        )
        return True

    def release(self) -> None:
        """Hand over at once on a clean shutdown instead of letting the lease expire."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                self.api.patch_namespaced_lease(
                    self.name,
                    self.namespace,
                    {
                        "metadata": {"resourceVersion": lease.metadata.resource_version},
                        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1},
                    },
                )
                _log.info("Released the lease %s/%s", self.namespace, self.name)
        except ApiException as exc:
            _log.warning("Could not release the lease: %s", exc.reason)

    def wait_for_leadership(self, stop: threading.Event, poll_seconds: float = 2.0) -> bool:
        while not stop.is_set():
            try:
                if self.try_hold():
                    return True
            except ApiException as exc:
                _log.warning("Reading the lease failed: %s", exc.reason)
            stop.wait(min(poll_seconds, self.renew_seconds))
        return False

    def keep_renewing(self, lost: threading.Event, stop: threading.Event) -> None:
        """Renew until stopped; set ``lost`` when the lease could not be renewed in time."""
        last_ok = time.monotonic()
        while not stop.wait(self.renew_seconds):
            try:
                if self.try_hold():
                    last_ok = time.monotonic()
                    continue
                _log.error("Another replica took the lease %s/%s", self.namespace, self.name)
            except Exception as exc:
                _log.warning("Renewing the lease failed: %s", exc)
                # Keep trying while the lease is still ours; give up before it expires.
                if time.monotonic() - last_ok < self.lease_seconds - self.renew_seconds:
                    continue
            lost.set()
            return


def _as_text(value: object) -> str | None:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value) if value else None


class StandbyHealth:
    """Answers the liveness probe while this replica waits for the lease (Kopf's own
    endpoint only exists once it runs)."""

    def __init__(self, host: str, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"standby\n")

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
