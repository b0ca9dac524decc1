"""What a notebook or a terminal sees of a run: Pixeltable-like output, not Dagster's event stream.

Runs made in this process (an insert, add_computed_column, the demo) keep every event in the Dagster
instance (the UI shows each run) but print none of it: `run_config()` turns the console logger down to
CRITICAL. Runs submitted to the instance (`launch.submit_and_wait`) get the same run config, and the stderr
of their processes passes through this process (`quiet_descendants`), which leaves out the lines Dagster's
multiprocess executor prints from each step process before the run's loggers apply. `PXT_VERBOSE=1` brings
the event stream back. While such a run computes rows, a tqdm bar shows rows done and rows/s, once the work
has taken more than two seconds; the caller then prints one summary line ("Inserted 3 rows with 0 errors in
0.77 s (3.9 rows/s)").
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

_BARS = contextvars.ContextVar("pxt_progress_bars", default=False)
BAR_DELAY_S = 2.0  # short runs show no bar at all (PXT_PROGRESS_DELAY_S changes it)


def verbose() -> bool:
    return os.environ.get("PXT_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


def quiet_dagster_warnings() -> None:
    """Dagster's Beta/Preview warnings about its own internals (the component loader, code references, the
    automation sensor's parameters) are not the user's business: ignored unless PXT_VERBOSE=1. Only warnings
    raised from inside dagster's packages are ignored; a user calling a beta API still sees them."""
    if verbose():
        return
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category, module=r"dagster(\.|$)")


def run_config(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run config for a run executed in this process: `extra`, plus a quiet console logger unless verbose."""
    config = dict(extra or {})
    if not verbose():
        config.setdefault("loggers", {"console": {"config": {"log_level": "CRITICAL"}}})
    return config


#: a line Dagster's console logger writes ("%(asctime)s - dagster - LEVEL - ..."), at a level below CRITICAL,
#: once the terminal colours (ANSI escapes) are taken out
_DAGSTER_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - dagster - "
                           rb"(?:DEBUG|INFO|WARNING|ERROR) - ")
_ANSI = re.compile(rb"\x1b\[[0-9;]*m")
_STDERR = threading.Lock()  # one redirection of this process's stderr at a time


@contextlib.contextmanager
def quiet_descendants() -> Iterator[None]:
    """Processes started inside this block (a code server, and through it each run's worker and the step
    processes of its multiprocess executor) write their stderr through a pipe that this process forwards to
    its own stderr, without Dagster's console log lines below CRITICAL (unless verbose).

    A step process logs STEP_WORKER_STARTED ("Executing step ... in subprocess.") to the console before it
    loads the run's loggers (run_config), with a console logger made from the instance's settings alone;
    those also set the level that decides which of context.log's messages the event log keeps, so that
    setting is left alone and the lines are dropped here instead. The event log keeps every event."""
    if verbose():
        yield
        return
    with _STDERR:
        read_end, write_end = os.pipe()
        target, saved = os.dup(2), os.dup(2)
        sys.stderr.flush()
        os.dup2(write_end, 2)
        os.close(write_end)
        threading.Thread(target=_forward, args=(read_end, target), name="pxt-stderr", daemon=True).start()
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)  # the processes started here keep the pipe; the thread ends when they all have
            os.close(saved)


def _forward(read_end: int, target: int) -> None:
    with open(read_end, "rb") as source, open(target, "wb", buffering=0) as sink:
        for line in source:
            if not _DAGSTER_LINE.match(_ANSI.sub(b"", line)):
                try:
                    sink.write(line)
                except OSError:  # our stderr is gone: nothing more to show
                    return


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
    tqdm, file = _bar_kind()
    delay = float(os.environ.get("PXT_PROGRESS_DELAY_S", BAR_DELAY_S))
    return tqdm(total=total, desc=what, unit="row", delay=delay, leave=False, file=file, dynamic_ncols=True)


def _bar_kind() -> tuple[Any, Any]:
    """The tqdm class and stream for a bar here: in a Jupyter kernel, the notebook's widget bar when ipywidgets
    is installed, else the text bar on stdout (tqdm.auto would warn on stderr that ipywidgets is missing, and
    a text bar on stderr shows as an error block in the notebook); elsewhere the text bar on stderr."""
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            from tqdm.std import tqdm

            return tqdm, sys.stdout
        from tqdm.notebook import tqdm

        return tqdm, sys.stderr
    from tqdm.std import tqdm

    return tqdm, sys.stderr


__all__ = ["bar", "progress_bars", "quiet_descendants", "run_config", "verbose"]
