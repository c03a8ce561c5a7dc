"""A machine without go, java or mvn gets one line per tool saying what to install."""

import pytest

from tailor_localenv import bootstrap


def test_missing_tools_are_named_with_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("TAILOR_NO_APT", "1")
    with pytest.raises(bootstrap.BootstrapError) as failure:
        bootstrap.require_tools(need_go=True, need_mvn=True)
    lines = str(failure.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "java not found",
        "mvn not found",
        "go not found",
    ]
    assert "openjdk-17-jre-headless" in lines[0]
    assert "maven" in lines[1]


def test_the_demos_live_click_stream_does_not_run_dry():
    from itertools import islice

    from tailor_localenv.demo_traffic import live_clicks

    # Ten minutes at the default 200 events/s.
    assert sum(1 for _ in islice(live_clicks(), 120_000)) == 120_000
