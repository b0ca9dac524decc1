"""The torture run's short version (bench/torture.py; the long one is `python -m bench torture --seconds 600`):
processes doing random inserts with bad values and files, column adds and drops, deletes, resumes, partial
runs and gc on one table, killed at the code's fault points, with the invariants checked after every round."""

from __future__ import annotations

import pytest

from bench import torture


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_short_torture_run_finds_no_violation(db, pg_server, monkeypatch):
    lines: list[str] = []
    result = torture.run(seconds=30, procs=3, db=db, dest_kind="local", seed=2026 + len(db),
                         log=lines.append, postgres=pg_server if db == "postgres" else None)
    assert result["violations"] == 0, "\n".join(lines)
    assert result["ops"] > 0 and result["rounds"] >= 2, result
    assert result["kills"] > 0, result  # the run killed processes at fault points: it tested something
    assert all(result["fault_hits"].values()), result  # each fault point at least once
