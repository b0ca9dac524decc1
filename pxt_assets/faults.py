"""Fault injection for the test suite: `kill -9` of a process at a named point, deterministically.

`PXT_FAULT_POINT=name:count` (several separated by commas) makes the process that reaches `fault_point(name)`
for the count-th time kill itself with SIGKILL there, as `kill -9` from outside would, with no chance to
clean up. `name:count:stop` stops it there instead (SIGSTOP), so a test can act while it is frozen at that
point (run gc, say) and then let it go on (SIGCONT). The variable is read once, at import; unset (always,
outside tests) a call is one dictionary lookup. Each process counts its own hits, so in a run whose steps are
processes of their own (Dagster's multiprocess executor) the step that reaches the point dies, not the run.

Points (see pxt_assets_tests/test_faults.py):
- `before_upload`, `after_upload`: around each file a column writer stores (inserted copies and computed
  files, local folders and buckets alike);
- `mid_upload`: a local file written to its temporary name, not yet renamed into place;
- `before_commit`, `mid_commit` (inside the SQL transaction, rows written, not committed), `after_commit`;
- `gc_before_delete`: gc holding a batch's claim, its candidates checked again, none deleted yet.
- `watch_before_delete`: a watch with a queue, its tick's batches recorded, its messages not deleted yet.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "PXT_FAULT_POINT"


def _parse(text: str | None) -> dict[str, tuple[int, int]]:
    armed: dict[str, tuple[int, int]] = {}
    for part in (text or "").split(","):
        if part.strip():
            name, count, action = (part.strip().split(":") + ["", ""])[:3]
            armed[name] = (int(count or 1), signal.SIGSTOP if action == "stop" else signal.SIGKILL)
    return armed


_ARMED = _parse(os.environ.get(ENV))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def fault_point(name: str) -> None:
    """Die (or stop) here on the count-th hit of `name` in this process, if PXT_FAULT_POINT asks for it."""
    if name not in _ARMED:
        return
    count, sig = _ARMED[name]
    with _lock:
        _hits[name] = hit = _hits.get(name, 0) + 1
    if hit == count:
        os.kill(os.getpid(), sig)
