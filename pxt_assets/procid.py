"""Process identity: which process wrote a record, and whether it may still be running.

The file cache's pins and the row store's marks of runs writing a batch name their process as
[pid, start time, host and pid namespace], so another process can tell a holder that is provably gone
(killed: kill -9, an OOM kill) from one that may still be at work.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    pid: int
    start: int | None
    ns: str


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of `pid` from /proc, or None if unavailable or gone."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _pid_namespace() -> str:
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    # The initial pid namespace has the same inode on every Linux host, so the host name is part of it.
    return f"{socket.gethostname()}/{ns}"


_current: Process | None = None


def current_process() -> Process:
    global _current
    pid = os.getpid()
    # Recomputed after a fork: the child is a different process and must not pin under its parent's pid.
    if _current is None or _current.pid != pid:
        stat = _proc_stat(pid)
        _current = Process(pid, stat[1] if stat else None, _pid_namespace())
    return _current


def pid_alive(pid: int, start: int | None, ns: str) -> bool:
    """Whether the process (pid, start time, namespace) may still be running. Errs on the side of 'alive'."""
    me = current_process()
    if ns != me.ns:
        return True  # a pid from another host or container says nothing here
    if pid == me.pid:
        return start is None or start == me.start
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would send CTRL_C_EVENT there; stale pins need clear() by hand
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if start is None:
        return True
    stat = _proc_stat(pid)
    # A zombie (killed, not yet reaped) still answers kill(0) but will never unpin; another start time means
    # the pid was recycled.
    return stat is not None and stat[0] != "Z" and stat[1] == start


def process_identity() -> list:
    """This process as [pid, start time, host and pid namespace] (JSON-able), for records that other processes
    check with process_alive()."""
    me = current_process()
    return [me.pid, me.start, me.ns]


def process_alive(identity: list) -> bool:
    """Whether the process `identity` names may still be running; 'alive' unless provably gone (a process of
    another host or container is taken as alive)."""
    pid, start, ns = identity
    return pid_alive(int(pid), start, str(ns))


def holder_gone(holder: str | None) -> bool:
    """Whether the process a recorded holder (`process_identity()` as JSON text) names is provably gone."""
    if not holder:
        return False  # recorded by a release that did not name its process: only the record's age counts
    try:
        return not process_alive(json.loads(holder))
    except (ValueError, TypeError):
        return False
