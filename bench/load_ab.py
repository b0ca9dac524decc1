"""`python -m bench.load_ab HOME ROUNDS NAME=CHECKOUT ...`: the code location's load, checkouts side by side.

For each checkout (a folder holding a `pxt_assets` package, e.g. `git archive main | tar -x -C /tmp/base`),
alternating their order each round, on the home a `bench scale` run built (table `scale/rows`):

- defs: `python -c "from pxt_assets.definitions import defs; defs()"`;
- server: `dagster definitions validate -m pxt_assets.definitions` (a code server's load and snapshot);
- a run: `dagster asset materialize` of `scale/rows/width` for the last batch (a run worker and one step
  process, multiprocess executor); step_load is its STEP_WORKER_STARTING -> STEP_START.

Each process's own CPU time is taken at its exit (a sitecustomize.py put first on PYTHONPATH), so the step
process and the run worker are told apart; on a shared machine CPU seconds are steadier than wall time.
The last line is one JSON object: medians per checkout, ratios to the first checkout, every figure.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HOOK = """import os
if os.environ.get("LOAD_CPU_LOG"):
    import atexit, time
    def _dump():
        with open(os.environ["LOAD_CPU_LOG"], "a") as f:
            f.write(f"{os.getpid()} {time.process_time():.3f}\\n")
    atexit.register(_dump)
"""


def main(argv: list[str]) -> None:
    home, rounds = os.path.abspath(argv[0]), int(argv[1])
    sides = dict(a.split("=", 1) for a in argv[2:])
    bin_dir = pathlib.Path(sys.executable).parent
    os.environ.update(PIXELTABLE_HOME=home, DAGSTER_HOME=os.path.join(home, "dagster"), PXT_QUIET="1")
    import dagster as dg

    from pxt_assets.instance import get_instance

    instance = get_instance()
    last = instance.get_dynamic_partitions("scale__rows__batches")[-1]
    hook = tempfile.mkdtemp(prefix="pxt-load-hook-")
    pathlib.Path(hook, "sitecustomize.py").write_text(HOOK)
    log = os.path.join(hook, "cpu.log")

    def run(cmd: list[str], side: str) -> tuple[float, list[float]]:
        open(log, "w").close()
        env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{sides[side]}", "LOAD_CPU_LOG": log,
               "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{cmd} failed:\n{done.stderr[-3000:]}")
        # in exit order (a step process before its run worker), without multiprocessing's resource tracker
        return wall, [c for c in (float(x.split()[1]) for x in open(log) if x.strip()) if c > 0.2]

    out: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
    for r in range(rounds):
        for side in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            figures = out[side]
            wall, cpu = run([str(bin_dir / "python"), "-c", "from pxt_assets.definitions import defs; defs()"], side)
            figures.setdefault("defs_wall", []).append(wall)
            figures.setdefault("defs_cpu", []).append(cpu[-1])
            wall, cpu = run([str(bin_dir / "dagster"), "definitions", "validate", "-m", "pxt_assets.definitions"], side)
            figures.setdefault("server_wall", []).append(wall)
            figures.setdefault("server_cpu", []).append(cpu[-1])
            wall, cpu = run([str(bin_dir / "dagster"), "asset", "materialize", "-m", "pxt_assets.definitions",
                             "--select", "scale/rows/width", "--partition", last], side)
            figures.setdefault("run_wall", []).append(wall)
            figures.setdefault("step_cpu", []).append(cpu[0])
            figures.setdefault("run_worker_cpu", []).append(cpu[-1])
            run_record = instance.get_runs(limit=1)[0]
            times: dict = {}
            for record in instance.all_logs(run_record.run_id):
                if record.dagster_event is not None:
                    times.setdefault(record.dagster_event.event_type, record.timestamp)
            figures.setdefault("step_load", []).append(
                times[dg.DagsterEventType.STEP_START] - times[dg.DagsterEventType.STEP_WORKER_STARTING])
            print(side, {k: round(v[-1], 3) for k, v in figures.items()}, f"load {os.getloadavg()[0]:.1f}", flush=True)
    median = {s: {k: round(statistics.median(v), 3) for k, v in d.items()} for s, d in out.items()}
    first = next(iter(sides))
    print(json.dumps({"home": home, "rounds": rounds, "median": median,
                      "over_first": {s: {k: round(median[s][k] / median[first][k], 3) for k in median[s]}
                                     for s in sides},
                      "all": {s: {k: [round(x, 3) for x in v] for k, v in d.items()} for s, d in out.items()}}))


if __name__ == "__main__":
    main(sys.argv[1:])
