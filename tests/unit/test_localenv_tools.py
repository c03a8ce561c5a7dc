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


def test_the_demos_live_clicks_continue_its_history_without_running_dry():
    from itertools import islice

    from tailor_localenv.demo_traffic import demo_store

    now_ms = 1_800_000_000_000
    history, live = demo_store(now_ms, history_days=2)
    assert history
    assert all(e.ts < now_ms for e in history)
    # Ten minutes at the default 200 events/s, from the same store: its shoppers and items.
    clicks = list(islice(live, 120_000))
    assert len(clicks) == 120_000
    assert clicks[0].ts >= now_ms
    assert {e.user_id for e in clicks} == {e.user_id for e in history}
