"""Progress lines for long steps: one line per event, with the elapsed time."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def say(message: str) -> None:
    """Print one progress line to stderr (stdout stays free for machine-readable output)."""
    elapsed = time.monotonic() - _START
    print(f"[tailor {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
