"""Measurements shared by the benchmarks: memory and CPU from /proc, percentiles, repairs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core: int) -> float:
    """CPU time core ``core`` has spent on anything but idling, since boot: what a server
    pinned to a core of its own costs, whatever its processes and threads."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name == f"cpu{core}":
            # user nice system idle iowait irq softirq steal
            values = [int(t) for t in ticks[:8]]
            return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
    raise ValueError(f"no core {core} in /proc/stat")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def histogram(metrics: str, name: str) -> tuple[float, float, list[tuple[float, float]]]:
    """Count, sum and cumulative (upper bound, count) buckets of a Prometheus histogram in
    the text exposition format."""
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((float(bound), float(line.split()[-1])))
        elif line.startswith(f"{name}_sum"):
            total = float(line.split()[-1])
        elif line.startswith(f"{name}_count"):
            count = float(line.split()[-1])
    return count, total, buckets


def seconds_to_recreate(
    read_uid: Callable[[], str | None], delete: Callable[[], object], timeout: float = 60.0
) -> float:
    """Delete an object and time until one with a new uid exists (``read_uid`` returns
    None while there is none)."""
    old = read_uid()
    started = time.monotonic()
    delete()
    while True:
        uid = read_uid()
        if uid is not None and uid != old:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not recreated within {timeout:.0f} s")
        time.sleep(0.01)


def peer_venv(cache_root: Path, name: str, requirements: list[str]) -> Path:
    """A venv of its own for a peer (its dependencies are not Tailor's) in the cache,
    installed once with uv from the dev environment; its bin directory."""
    venv = cache_root / "peers" / name
    marker = venv / ".installed"
    if not marker.exists():
        uv = Path(sys.executable).with_name("uv")
        print(f"{name}: installing {' '.join(requirements)} into {venv} (once)", file=sys.stderr)
        subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        python = str(venv / "bin" / "python")
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", python, *requirements], check=True
        )
        marker.touch()
    return venv / "bin"
