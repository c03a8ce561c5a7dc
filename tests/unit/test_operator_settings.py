"""The operator's knobs come from TAILOR_* variables, once, with errors that name them."""

from pathlib import Path

import pytest

from tailor_operator.settings import OperatorSettings


def test_defaults_without_any_variable() -> None:
    settings = OperatorSettings.from_env({})
    assert settings.resync_seconds == 60
    assert settings.unready_seconds == 120
    assert settings.scorer == "ghcr.io/tailor-dev/scorer:0.1.0"


def test_each_field_is_its_variable_in_capitals() -> None:
    settings = OperatorSettings.from_env(
        {
            "TAILOR_RESYNC_SECONDS": "30",
            "TAILOR_IMAGE_TAG": "1.2.3",
            "TAILOR_SCORER_IMAGE": "registry.local/scorer:dev",
            "TAILOR_UNRELATED": "ignored",
            "PATH": "/bin",
        }
    )
    assert settings.resync_seconds == 30
    assert settings.stream_worker == "ghcr.io/tailor-dev/stream-worker:1.2.3"
    assert settings.scorer == "registry.local/scorer:dev"


def test_a_bad_value_names_the_variable_and_why() -> None:
    with pytest.raises(ValueError, match="TAILOR_RESYNC_SECONDS") as caught:
        OperatorSettings.from_env({"TAILOR_RESYNC_SECONDS": "0", "TAILOR_WORKER_THREADS": "x"})
    message = str(caught.value)
    assert "TAILOR_RESYNC_SECONDS='0': Input should be greater than 0" in message
    assert "TAILOR_WORKER_THREADS='x'" in message


def test_every_knob_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [
        f"TAILOR_{name.upper()}"
        for name in OperatorSettings.model_fields
        if f"`TAILOR_{name.upper()}`" not in readme
    ]
    assert not missing, f"README.md's operator table lacks {missing}"
