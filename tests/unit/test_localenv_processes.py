"""Managed processes report why they failed to start and never outlive the test run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailor_localenv.processes import ManagedProcess, StartError


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A dead child nobody reaped yet is a zombie: gone for our purposes.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_process_that_exits_early_reports_its_log(tmp_path: Path) -> None:
    script = "import sys; print('listen tcp 127.0.0.1:1: bind: permission denied'); sys.exit(3)"
    proc = ManagedProcess("fake-etcd", [sys.executable, "-c", script], tmp_path).start()
    with pytest.raises(StartError) as failure:
        proc.wait_healthy(lambda: False, timeout=30, what="serving")
    message = str(failure.value)
    assert "fake-etcd exited with code 3 before it was serving" in message
    assert "bind: permission denied" in message
    assert (tmp_path / "fake-etcd.log").is_file()


def test_a_process_that_never_gets_healthy_times_out_with_the_last_probe_error(
    tmp_path: Path,
) -> None:
    proc = ManagedProcess("sleeper", ["sleep", "60"], tmp_path).start()
    try:

        def probe() -> bool:
            raise ConnectionRefusedError("connection refused")

        with pytest.raises(StartError, match=r"was not healthy after .*connection refused"):
            proc.wait_healthy(probe, timeout=0.5)
    finally:
        proc.stop()
    assert not proc.alive()


def test_stop_takes_the_whole_process_group(tmp_path: Path) -> None:
    # A shell that starts a grandchild, like the kafka scripts or go run would.
    pid_file = tmp_path / "grandchild.pid"
    proc = ManagedProcess(
        "wrapper", ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], tmp_path
    ).start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the wrapper never started its child"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    proc.stop(grace=5)
    assert _gone(grandchild, within=5)


def test_children_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    # The parent plays the test runner: SIGKILL skips atexit, so only PR_SET_PDEATHSIG helps.
    parent_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tailor_localenv.processes import ManagedProcess\n"
        f"p = ManagedProcess('child', ['sleep', '120'], Path({str(tmp_path)!r})).start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    assert _gone(child, within=10), "the child outlived its SIGKILLed parent"


def test_free_ports_avoid_the_ephemeral_range_and_never_repeat():
    from tailor_localenv.processes import _ephemeral_start, free_port

    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(p < _ephemeral_start() for p in ports)
