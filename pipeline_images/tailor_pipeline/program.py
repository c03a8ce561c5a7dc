"""What every pipeline program does first: the common flags, logging, and its settings."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
from pathlib import Path
from typing import Literal

from tailor_pipeline.observability import setup_logging
from tailor_pipeline.settings import CONFIG_ENV, PipelineSettings

# The kubelet mounts this file into every container (terminationMessagePath): what a
# program writes there is the container's termination message, which `kubectl describe pod`
# and the pipeline's status show. Outside a pod it does not exist.
TERMINATION_LOG = Path("/dev/termination-log")


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the installed Tailor release, as every Tailor program prints it."""
    try:
        version = importlib.metadata.version("tailor")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        version = "unknown (not installed)"
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version}", help="print the version"
    )


def argument_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the flags every program takes: --config, -v and --version."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_version(parser)
    parser.add_argument(
        "--config", help=f"pipeline settings file (default ${CONFIG_ENV}, else the ConfigMap mount)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def start(
    args: argparse.Namespace, log: logging.Logger, section: Literal["worker", "scorer"]
) -> PipelineSettings | None:
    """Set up logging and read the settings, which must have the program's ``section``;
    None (after logging why) when they cannot be read, and the program should exit 2."""
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        settings = PipelineSettings.load(args.config)
        if section == "worker":
            settings.worker_settings()
        else:
            settings.scorer_settings()
    except (OSError, ValueError) as exc:
        log.error("Cannot load the pipeline settings: %s", exc)
        return None
    return settings


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
