"""What a notebook or a terminal sees of a run: Pixeltable-like output, not Dagster's event stream.

Runs made in this process (an insert, add_computed_column, the demo) keep every event in the Dagster
instance (the UI shows each run) but print none of it: `run_config()` turns the console logger down to
CRITICAL. `PXT_VERBOSE=1` brings the event stream back. While such a run computes rows, a tqdm bar shows
rows done and rows/s, once the work has taken more than two seconds; the caller then prints one summary
line ("Inserted 3 rows with 0 errors in 0.77 s (3.9 rows/s)").
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator
from typing import Any

_BARS = contextvars.ContextVar("pxt_progress_bars", default=False)
BAR_DELAY_S = 2.0  # short runs show no bar at all (PXT_PROGRESS_DELAY_S changes it)


def verbose() -> bool:
    return os.environ.get("PXT_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


def run_config(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run config for a run executed in this process: `extra`, plus a quiet console logger unless verbose."""
    config = dict(extra or {})
    if not verbose():
        config.setdefault("loggers", {"console": {"config": {"log_level": "CRITICAL"}}})
    return config


@contextlib.contextmanager
def progress_bars() -> Iterator[None]:
    """Row progress of the steps run inside this block (in this process) is shown as tqdm bars."""
    token = _BARS.set(not verbose())
    try:
        yield
    finally:
        _BARS.reset(token)


def bar(total: int, what: str) -> Any:
    """A tqdm bar for `total` rows of `what`, or None when no bar is wanted here (a run in a worker or
    the daemon: its progress is in the event log)."""
    if not _BARS.get() or total <= 1:
        return None
    from tqdm.auto import tqdm

    delay = float(os.environ.get("PXT_PROGRESS_DELAY_S", BAR_DELAY_S))
    return tqdm(total=total, desc=what, unit="row", delay=delay, leave=False, file=sys.stderr,
                dynamic_ncols=True)


__all__ = ["run_config", "progress_bars", "bar", "verbose"]
