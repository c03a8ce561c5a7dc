"""`tailor-operator` / `python -m tailor_operator`: run the operator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine

import kopf
from prometheus_client import start_http_server

from tailor_operator.log_format import use_json_logs
from tailor_operator.settings import OperatorSettings
from tailor_pipeline.program import add_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor-operator", description=__doc__)
    add_version(parser)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeat for several; glob patterns allowed)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL, or 'off' (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="Prometheus port, 0 for off (default 9090)"
    )
    parser.add_argument(
        "--leader-election",
        action="store_true",
        help="run several replicas safely: only the holder of a Lease reconciles (HA)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default $POD_NAMESPACE, else default)",
    )
    parser.add_argument("--leader-election-id", default="tailor-operator", help="name of the Lease")
    parser.add_argument(
        "--lease-seconds",
        type=int,
        default=15,
        help="how long a dead leader blocks failover (default %(default)s)",
    )
    parser.add_argument("--log-format", choices=["plain", "json"], default="plain")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("tailor").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.log_format == "json":
        use_json_logs()
    if args.metrics_port:
        start_http_server(args.metrics_port)

    try:
        settings = OperatorSettings.from_env()
    except ValueError as exc:
        logging.getLogger("tailor.operator").critical("Cannot start: %s", exc)
        return 1
    problem = preflight(args.namespace, settings.preflight_seconds)
    if problem:
        # Kopf would retry its startup every minute for ever; a pod that exits shows the
        # cause in `kubectl get pods` (CrashLoopBackOff) and its termination message.
        logging.getLogger("tailor.operator").critical("Cannot start: %s", problem)
        return 1

    import tailor_operator.handlers  # noqa: F401 - registers the handlers

    liveness = None if args.liveness == "off" else args.liveness

    async def operate(stopping: asyncio.Event | None = None) -> None:
        # Leader election replaces Kopf's peering, so every replica runs standalone.
        await kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=liveness,
            standalone=True,
            stop_flag=stopping,
            memo=kopf.Memo(settings=settings),
        )

    if not args.leader_election:
        _run_loop(operate())
        return 0
    return _run_as_leader(args, liveness, operate)


def _run_loop(main: Coroutine[None, None, None]) -> None:
    # What kopf.run swallows too: a cancelled operator is a stop, not a failure.
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main)


def preflight(namespaces: list[str], wait_seconds: float) -> str | None:
    """Why the operator cannot run at all (no cluster credentials, no permission to read
    pipelines, no CRD), in one line; None when it can. Retried briefly, since an API server
    that is starting is not a reason to exit."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from tailor_operator import api

    try:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    except (config.ConfigException, OSError) as exc:
        return f"no Kubernetes credentials: not in a pod, and no usable kubeconfig ({exc})"
    objects = client.CustomObjectsApi()
    literal = [ns for ns in namespaces if not any(c in ns for c in "*?[")]
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if namespaces:
                for namespace in literal:
                    objects.list_namespaced_custom_object(
                        api.GROUP, api.VERSION, namespace, api.PLURAL, limit=1
                    )
            else:
                objects.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, limit=1)
            return None
        except ApiException as exc:
            where = f"in {', '.join(literal)}" if namespaces else "cluster-wide"
            if exc.status in (401, 403):
                return f"not allowed to list {api.PLURAL}.{api.GROUP} {where}: {exc.reason}"
            if exc.status == 404:
                return (
                    f"the CRD {api.PLURAL}.{api.GROUP} is not installed"
                    " (kubectl apply --server-side -f crds/, or the Helm chart)"
                )
            problem = f"the API server answered {exc.status} {exc.reason}"
        except Exception as exc:  # connection refused, TLS, DNS
            problem = f"cannot reach the API server: {exc}"
        if time.monotonic() >= deadline:
            return problem
        time.sleep(2)


def _run_as_leader(
    args: argparse.Namespace,
    liveness: str | None,
    operate: Callable[[asyncio.Event], Coroutine[None, None, None]],
) -> int:
    from kubernetes import client, config

    from tailor_operator.leader import LeaseElector, StandbyHealth

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaseElector(
        client.CoordinationV1Api(),
        args.leader_election_namespace,
        args.leader_election_id,
        identity,
        lease_seconds=args.lease_seconds,
        renew_seconds=max(1.0, args.lease_seconds / 3),
    )
    # These handlers stay until the event loop takes the signals over: a SIGTERM between
    # winning the lease and Kopf's start must still stop this replica (and release the lease).
    stop = threading.Event()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    standby = None
    if liveness:
        url = urllib.parse.urlsplit(liveness)
        standby = StandbyHealth(url.hostname or "0.0.0.0", url.port or 8080)
    log = logging.getLogger("tailor.leader")
    log.info("Waiting for the lease %s/%s as %s", elector.namespace, elector.name, identity)
    try:
        leader = elector.wait_for_leadership(stop)
    finally:
        if standby is not None:
            standby.close()
    if not leader:
        return 0
    lost, renewing_done = threading.Event(), threading.Event()
    renewers: list[threading.Thread] = []

    async def lead() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, stopping.set)
        if stop.is_set():
            return

        def renew() -> None:
            elector.keep_renewing(lost, renewing_done)
            if lost.is_set():
                with contextlib.suppress(RuntimeError):  # the loop has closed already
                    loop.call_soon_threadsafe(stopping.set)

        renewers.append(threading.Thread(target=renew, name="lease-renewer", daemon=True))
        renewers[0].start()
        await operate(stopping)

    try:
        _run_loop(lead())
    finally:
        renewing_done.set()
        for renewer in renewers:
            renewer.join()
    if lost.is_set():
        log.error("Lost the lease; exiting so a fresh replica can wait for it")
        return 1
    elector.release()
    return 0


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


if __name__ == "__main__":
    raise SystemExit(main())
