"""The operator's JSON log lines in the pipeline programs' schema: one schema everywhere."""

from __future__ import annotations

import copy
import logging
import time

from tailor_pipeline.observability import JsonFormatter

# Kopf's bookkeeping on the records of its object loggers: not for the log line.
_KOPF_INTERNAL = ("settings", "k8s_skip")


class OperatorJsonFormatter(JsonFormatter):
    """``ts``, ``level``, ``logger``, ``msg`` and extras, as the programs write them; the
    pipeline a Kopf line is about becomes ``object`` (namespace/name)."""

    def format(self, record: logging.LogRecord) -> str:
        record = copy.copy(record)
        for key in _KOPF_INTERNAL:
            record.__dict__.pop(key, None)
        ref = record.__dict__.pop("k8s_ref", None)
        if isinstance(ref, dict):
            record.__dict__["object"] = f"{ref.get('namespace')}/{ref.get('name')}"
        return super().format(record)


def use_json_logs() -> None:
    """Give every handler on the root logger (Kopf's included) the programs' JSON format."""
    formatter = OperatorJsonFormatter()
    formatter.converter = time.gmtime
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
