"""`python -m bench scale --rows N --batch B [--db URL]`: a table of N rows built in batches of B, then the
reads a user makes of it, timed.

Each row references a tiny generated image in place (one of a few hundred, widths 8..107) and has an Int
column `n`; computed columns are `width` and a `thumbnail` written to a local destination. The reads:
`count()`, a filter keeping ~1% of the rows (`width > 106`, with two columns), a select of two value columns
and one fileurl for every row, and a new process loading `pxt_assets.definitions` (the code location): with
`defs()` (load_defs_s), as a code server does (load_server_s), and a step process's start (load_step_s); the
first two also as CPU seconds (load_defs_cpu_s, load_server_cpu_s: steadier than wall time on a shared machine).
The last line is one JSON object:

    {"rows", "batches", "count_s", "where_s", "select_s", "first_batch_s", "last_batch_s", "load_defs_s",
     "load_server_s", "load_step_s", "load_defs_cpu_s", "load_server_cpu_s", "peak_rss_mb", "db", "insert_s", "batch_s_p50",
     "reads": {each read's three timings}}

Each read is made three times and its median reported (`reads` has all three): a single read right after
building a million rows can land on the machine flushing a gigabyte of new files to disk. `--reads-only`
times the reads (and load_defs) on a table an earlier run built in `--home`.

`--db` is a SQLAlchemy URL (`postgresql+psycopg://user@host:port/db`); default: SQLite in the home. The home
(`--home`, default a temporary folder) holds the images, thumbnails and the Dagster instance.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import PIL.Image

DISTINCT_IMAGES = 500


def _images(folder: pathlib.Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(DISTINCT_IMAGES):
        path = folder / f"tiny_{i:04d}.png"
        if not path.exists():
            PIL.Image.new("RGB", (8 + i % 100, 8), ((i * 37) % 256, (i * 91) % 256, 128)).save(path)
        out.append(str(path))
    return out


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--db", help="SQLAlchemy URL of the row store (default: SQLite in the home)")
    parser.add_argument("--home", help="PIXELTABLE_HOME to build in (default: a temporary folder)")
    parser.add_argument("--reads-only", action="store_true",
                        help="time only the reads, on the table an earlier run built in --home")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.batch < 1:
        parser.error("--rows and --batch must be >= 1")
    home = pathlib.Path(args.home or tempfile.mkdtemp(prefix="pxt-scale-")).absolute()
    os.environ["PIXELTABLE_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    os.environ.setdefault("PXT_QUIET", "1")
    if args.db:
        os.environ["PIXELTABLE_DB_URL"] = args.db
    else:
        os.environ.pop("PIXELTABLE_DB_URL", None)
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)  # a thousand runs' DEBUG events, otherwise

    import pxt_assets as pxt
    from pxt_assets import rowstore
    from pxt_assets.instance import get_instance

    store = rowstore.for_settings(pxt.load_settings())
    batch_s: list[float] = []
    started = time.perf_counter()
    if args.reads_only:
        t = pxt.get_table("scale/rows")
        args.rows = t.count()
        print(f"reading {args.rows} rows built earlier in {home} (rows in {store!r})", flush=True)
    else:
        images = _images(home / "images")
        thumbs = home / "thumbs"
        thumbs.mkdir(parents=True, exist_ok=True)
        pxt.create_dir("scale", if_exists="ignore")
        t = pxt.create_table("scale/rows", {"img": pxt.Image, "n": pxt.Int}, if_exists="replace")
        t.add_computed_column(width=t.img.width)
        t.add_computed_column(thumbnail=t.img.thumbnail((4, 4)), destination=str(thumbs))
        print(f"building {args.rows} rows in batches of {args.batch} in {home} (rows in {store!r})", flush=True)
    instance = get_instance()
    for start in range(0, 0 if args.reads_only else args.rows, args.batch):
        rows = [{"img": images[i % len(images)], "n": i} for i in range(start, min(args.rows, start + args.batch))]
        seconds, _ = _timed(lambda: t.insert(rows, instance=instance, log=_Quiet()))
        batch_s.append(seconds)
        if len(batch_s) % 20 == 0 or start + args.batch >= args.rows:
            print(f"  {start + len(rows)} rows, batch {len(batch_s)}: {seconds:.2f} s "
                  f"({time.perf_counter() - started:.0f} s in all)", flush=True)
    insert_s = time.perf_counter() - started

    reads: dict[str, list[float]] = {k: [] for k in ("count_s", "where_s", "select_s", "load_defs_s",
                                                     "load_server_s", "load_step_s", "load_defs_cpu_s",
                                                     "load_server_cpu_s")}
    for _ in range(3):
        seconds, count = _timed(t.count)
        assert count == args.rows, (count, args.rows)
        reads["count_s"].append(seconds)
        seconds, kept = _timed(lambda: t.where(t.width > 106).select(t.n, t.thumbnail.fileurl).collect())
        reads["where_s"].append(seconds)
        seconds, everything = _timed(lambda: t.select(t.n, t.width, t.thumbnail.fileurl).collect())
        assert len(everything) == args.rows
        reads["select_s"].append(seconds)
        del everything
        cpu = _children_cpu()
        seconds, done = _timed(lambda: subprocess.run(
            [sys.executable, "-c", "from pxt_assets.definitions import defs; defs()"], env=dict(os.environ), capture_output=True,
            text=True))
        if done.returncode != 0:
            raise SystemExit(f"loading pxt_assets.definitions failed:\n{done.stderr[-3000:]}")
        reads["load_defs_s"].append(seconds)
        reads["load_defs_cpu_s"].append(_children_cpu() - cpu)
        server_s, server_cpu_s, step_s = _load_in_dagster(t)
        reads["load_server_s"].append(server_s)
        reads["load_server_cpu_s"].append(server_cpu_s)
        reads["load_step_s"].append(step_s)
    median = {k: round(statistics.median(v), 3) for k, v in reads.items()}
    print(json.dumps({
        "rows": args.rows,
        "batches": len(batch_s),
        "count_s": median["count_s"],
        "where_s": median["where_s"],
        "where_rows": len(kept),
        "select_s": median["select_s"],
        "first_batch_s": round(batch_s[0], 3) if batch_s else None,
        "last_batch_s": round(batch_s[-1], 3) if batch_s else None,
        "batch_s_p50": round(statistics.median(batch_s), 3) if batch_s else None,
        "insert_s": round(insert_s, 1),
        "load_defs_s": median["load_defs_s"],
        "load_server_s": median["load_server_s"],
        "load_step_s": median["load_step_s"],
        "load_defs_cpu_s": median["load_defs_cpu_s"],
        "load_server_cpu_s": median["load_server_cpu_s"],
        "reads": {k: [round(x, 3) for x in v] for k, v in reads.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "db": store.url.get_backend_name(),
    }))


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load_in_dagster(t) -> tuple[float, float, float]:
    """The code location as Dagster's processes load it, each in a new process: (server, its CPU, step).

    server: `dagster definitions validate -m pxt_assets.definitions`, what a code server does before it serves
    (the instance, the definitions, the repository snapshot the daemon and the UI read; a UI reload makes a
    new one). step: a step process's start, from Dagster's STEP_WORKER_STARTING event (the run's process
    launching it) to its STEP_START (imports, the instance, the location loaded, the plan made), in a run of
    `dagster asset materialize` of the table's `width` for its last batch (a column already computed there:
    nothing is written again)."""
    import dagster as dg

    from pxt_assets.assets.names import partitions_name
    from pxt_assets.instance import get_instance

    bin_dir = pathlib.Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cpu = _children_cpu()
    server_s, done = _timed(lambda: subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-m", "pxt_assets.definitions"], env=env,
        capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(f"dagster definitions validate failed:\n{(done.stdout + done.stderr)[-3000:]}")
    server_cpu_s = _children_cpu() - cpu
    instance = get_instance()
    last = instance.get_dynamic_partitions(partitions_name(t.spec))[-1]
    done = subprocess.run([str(bin_dir / "dagster"), "asset", "materialize", "-m", "pxt_assets.definitions",
                           "--select", "/".join([*t.spec.path, "width"]), "--partition", last],
                          env=env, capture_output=True, text=True)
    run = instance.get_runs(limit=1)[0]
    if done.returncode != 0 or run.status != dg.DagsterRunStatus.SUCCESS:
        raise SystemExit(f"dagster asset materialize failed:\n{(done.stdout + done.stderr)[-3000:]}")
    times = {}
    for record in instance.all_logs(run.run_id):
        if record.dagster_event is not None:
            times.setdefault(record.dagster_event.event_type, record.timestamp)
    return server_s, server_cpu_s, times[dg.DagsterEventType.STEP_START] - times[dg.DagsterEventType.STEP_WORKER_STARTING]


class _Quiet:
    """A log for insert(): keeps the per-batch summary line off the console."""

    def info(self, message: str) -> None:
        pass


if __name__ == "__main__":
    main()
