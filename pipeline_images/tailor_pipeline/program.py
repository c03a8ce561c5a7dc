"""What every pipeline program does first: the common flags, logging, and its settings."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tailor_pipeline.observability import setup_logging
from tailor_pipeline.settings import CONFIG_ENV, PipelineSettings

# The kubelet mounts this file into every container (terminationMessagePath): what a
# program writes there is the container's termination message, which `kubectl describe pod`
# and the pipeline's status show. Outside a pod it does not exist.
TERMINATION_LOG = Path("/dev/termination-log")


def argument_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the flags every program takes: --config and -v."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config", help=f"pipeline settings file (default ${CONFIG_ENV}, else the ConfigMap mount)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def start(args: argparse.Namespace, log: logging.Logger) -> PipelineSettings | None:
    """Set up logging and read the settings; None (after logging why) when they cannot be
    read, and the program should exit with status 2."""
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return PipelineSettings.load(args.config)
    except (OSError, ValueError) as exc:
        log.error("Cannot load the pipeline settings: %s", exc)
        return None


def give_up(log: logging.Logger, code: int, reason: str) -> int:
    """Log why the program cannot go on and leave it as the termination message; returns
    the exit status for ``main`` to return."""
    log.error("%s", reason)
    if TERMINATION_LOG.exists():
        try:
            TERMINATION_LOG.write_text(reason[:4000])
        except OSError as exc:
            log.warning("Cannot write %s: %s", TERMINATION_LOG, exc)
    return code
