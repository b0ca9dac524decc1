"""`python -m bench first-use [--homes N] [--processes P] [--mode insert|open]`: P processes making their first
insert into each of N new homes at once (the longer version of pxt_assets_tests/test_first_use.py).

Per home, the processes wait for one another (ready files), then each runs a whole first insert
(`pxt.create_table` + `insert` of a tiny generated image) into the new `$PIXELTABLE_HOME`, whose Dagster
instance (`$PIXELTABLE_HOME/dagster`) and row store they set up together. `--mode open` does what the test
does instead: only the set-up of the first insert at once, then one real insert per home.

The last line is one JSON object: {"homes", "processes", "mode", "failed": [first failures], "bad_stamps":
[homes whose Dagster databases hold other than one alembic revision], "first_s": {"median", "max"},
"seconds"}. A run without failures exits 0.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

from pxt_assets_tests.test_first_use import alembic_stamps, first_use_at_once


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench first-use")
    parser.add_argument("--homes", type=int, default=50)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--mode", choices=["insert", "open"], default="insert")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pxt-first-use-") as root:
        started = time.monotonic()
        lines = first_use_at_once(pathlib.Path(root), args.homes, args.processes, args.mode)
        seconds = time.monotonic() - started
        bad = []
        for home in sorted(pathlib.Path(root).iterdir()):
            try:
                stamps = alembic_stamps(home)
            except Exception as e:  # noqa: BLE001 - a database missing or unreadable: reported
                stamps = {"error": str(e)}
            if any(v != 1 for v in stamps.values()):
                bad.append({"home": home.name, **stamps})
    failed = [{k: line[k] for k in ("home", "process", "step", "error")} for line in lines if not line["ok"]]
    firsts = [line["s"] for line in lines if line["step"] == "first"]
    for line in [line for line in lines if not line["ok"]][:10]:
        print(f"failed: {line['home']} process {line['process']} ({line['step']}): {line['traceback']}",
              file=sys.stderr)
    print(json.dumps({"homes": args.homes, "processes": args.processes, "mode": args.mode, "failed": failed,
                      "bad_stamps": bad, "first_s": {"median": statistics.median(firsts), "max": max(firsts)},
                      "seconds": round(seconds, 1)}))
    sys.exit(1 if failed or bad else 0)
