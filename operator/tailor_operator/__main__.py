"""`tailor-operator` / `python -m tailor_operator`: run the operator."""

from __future__ import annotations

import argparse
import logging

import kopf
from prometheus_client import start_http_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor-operator", description=__doc__)
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
        "--peering",
        metavar="NAME",
        help="coordinate with other replicas through the KopfPeering object NAME (HA);"
        " without it the operator runs standalone",
    )
    parser.add_argument("--priority", type=int, default=0, help="peering priority")
    parser.add_argument("--log-format", choices=["plain", "json"], default="plain")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("tailor").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.metrics_port:
        start_http_server(args.metrics_port)

    import tailor_operator.handlers  # noqa: F401 - registers the handlers

    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=None if args.liveness == "off" else args.liveness,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
