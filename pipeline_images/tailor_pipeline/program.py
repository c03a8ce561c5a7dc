"""What every pipeline program does first: the common flags, logging, and its settings."""

from __future__ import annotations

import argparse
import logging

from tailor_pipeline.observability import setup_logging
from tailor_pipeline.settings import CONFIG_ENV, PipelineSettings


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
