"""The operator and the programs write one JSON log schema."""

from __future__ import annotations

import json
import logging

from tailor_operator.log_format import OperatorJsonFormatter
from tailor_pipeline.observability import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    line = logging.makeLogRecord({"name": "kopf.objects", "levelname": "INFO", "msg": "done"})
    line.__dict__.update(extra)
    return line


def test_a_kopf_line_has_the_programs_keys_and_names_its_pipeline() -> None:
    kopf_line = record(
        settings=object(),
        k8s_skip=False,
        k8s_ref={"kind": "PersonalizationPipeline", "namespace": "shop", "name": "storefront"},
    )
    operator = json.loads(OperatorJsonFormatter().format(kopf_line))
    program = json.loads(JsonFormatter().format(record()))
    assert set(program) == {"ts", "level", "logger", "msg"}
    assert set(operator) == set(program) | {"object"}
    assert operator["object"] == "shop/storefront"
    assert (operator["level"], operator["msg"]) == ("info", "done")
