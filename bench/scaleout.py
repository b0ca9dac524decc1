"""`python -m bench scaleout --images 400 --batch-rows 100`: the distributed path's throughput and fixed cost.

Runs the scale demo (pxt_assets/scale_demo.py: PostgreSQL, Redis, moto, the Dagster daemon and two Celery
workers on 127.0.0.1, each with its own empty homes) with `--images` generated images in the watched prefix and
batches of `--batch-rows` rows, then, with everything still up:

- `--fixed-samples` times (default 3), puts one more image and waits for its 1-row batch to commit: the fixed
  cost of a batch is the median of their times from the batch being recorded (the sensor's tick, which submits
  its run) to its commit;
- inserts the same images in process (a child process: the demo table on the embedded Dagster instance, its
  rows in another database of the same PostgreSQL, its files to the same moto bucket), in batches of the same
  size, with `t.insert` (the code location's load is not counted).

The last line is one JSON object:

    {"rows", "errors", "rows_per_s", "inprocess_rows_per_s", "ratio", "fixed_cost_s", "batches", "batch_rows",
     "batch_s_p50", "fixed_cost_samples", "phases_s", "seconds", "steps_by_worker", "inprocess_seconds",
     "executor"}

`--executor steps` measures the other way the demo can run batches (pxt_assets/scale_demo.py, EXECUTORS): the
daemon starts a process per run and each step is a Celery task of its own.

- `rows_per_s`: rows over the time from the first batch being recorded to the last commit (the workers'
  throughput; the sensor finding the images is not counted);
- `inprocess_rows_per_s`: rows over the in-process inserts' time; `ratio`: the first over the second;
- `phases_s`: where a 1-row batch's seconds go, medians over the fixed-cost samples, from Dagster's event log:
  `submit` (batch recorded -> run created), `dequeue` (run created -> the run coordinator hands it to the
  launcher), `launch` (run created -> RUN_START: the run worker's process and its code location load; with the
  "runs" executor, `launch.pickup`: the run's Celery task forwarded -> a worker runs it, and `launch.load`: the
  worker loads the job's definitions and plans the run), then
  per step `hop` (submitted to Celery -> the step's first event on the worker: the task's pick up, the code
  location's load there, the plan), `step` (STEP_START -> STEP_SUCCESS) and `poll` (STEP_SUCCESS
  -> the run worker seeing it: the next step's submission, or RUN_SUCCESS), and `run_end` (the batch's
  commit -> RUN_SUCCESS: the run worker seeing its last step end; not part of `total`); `total` is the
  fixed cost (batch recorded -> committed).

The machine is shared and noisy: compare rows/s with inprocess_rows_per_s, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _phases(instance, store, slug: str, batches: list[str]) -> dict[str, float]:
    """Where each of `batches`' seconds went (the module docstring's `phases_s`), medians over them."""
    import dagster as dg

    times = {b: (created, committed) for b, _, created, committed in store.batch_times(slug)}
    by_batch = {r.dagster_run.tags.get("dagster/partition"): r for r in instance.get_run_records()
                if r.dagster_run.job_name.endswith("__batch_job")}
    out: dict[str, list[float]] = {}

    def add(key: str, value: float | None) -> None:
        if value is not None:
            out.setdefault(key, []).append(value)

    for batch in batches:
        record = by_batch.get(batch)
        created, committed = times.get(batch, (None, None))
        if record is None or created is None or committed is None:
            continue
        deadline = time.monotonic() + 60  # its run may still be finishing after the commit: wait for its end
        while not record.dagster_run.is_finished and time.monotonic() < deadline:
            time.sleep(0.2)
            record = instance.get_run_records(dg.RunsFilter(run_ids=[record.dagster_run.run_id]))[0]
        run_created = record.create_timestamp.timestamp()
        first: dict[tuple[str, str | None], float] = {}
        every: list[tuple[float, str, str | None]] = []
        for entry in instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type_value
            if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
                message = event.message or entry.user_message or ""
                kind = ("submitted" if message.startswith("Submitting celery task")
                        else "executing" if "in celery worker" in message
                        else "forwarded" if "Celery task has been forwarded" in message
                        else "process" if message.startswith("Started process for run") else None)
                if kind is None:
                    kind = "engine: " + message[:40]
            if entry.step_key and kind not in ("submitted", "executing", "ASSET_MATERIALIZATION_PLANNED"):
                first.setdefault(("executing", entry.step_key), entry.timestamp)  # its first event on the worker
            first.setdefault((kind, entry.step_key), entry.timestamp)
            every.append((entry.timestamp, kind, entry.step_key))
        if batch == batches[-1]:  # the last one's timeline, on stdout
            print("timeline of batch", batch, "(s after it was recorded): run created", round(run_created - created, 2),
                  *(f"| {k} {(s or '').split('__')[-1]} {t - created:.2f}" for t, k, s in sorted(every)),
                  f"| committed {committed - created:.2f}", flush=True)
        run_start = first.get((dg.DagsterEventType.RUN_START.value, None))
        run_end = first.get((dg.DagsterEventType.RUN_SUCCESS.value, None))
        add("dequeue", first[(dg.DagsterEventType.RUN_STARTING.value, None)] - run_created
            if (dg.DagsterEventType.RUN_STARTING.value, None) in first else None)
        add("submit", run_created - created)
        add("launch", run_start - run_created if run_start else None)
        forwarded, process = first.get(("forwarded", None)), first.get(("process", None))
        add("launch.pickup", process - forwarded if process and forwarded else None)
        add("launch.load", run_start - process if run_start and process else None)
        steps = sorted({k for _, k in first if k}, key=lambda k: first[("executing", k)])
        submits = [first.get(("submitted", k)) for k in steps]
        for i, step in enumerate(steps):
            name = step.split("__")[-1] if "__" in step else step
            submitted, executing = first.get(("submitted", step)), first.get(("executing", step))
            start, success = first.get(("STEP_START", step)), first.get(("STEP_SUCCESS", step))
            add(f"{name}.hop", executing - submitted if executing and submitted else None)
            add(f"{name}.step", success - start if success and start else None)
            seen = submits[i + 1] if i + 1 < len(submits) else run_end
            add(f"{name}.poll", seen - success if seen and success else None)
        add("run_end", run_end - committed if run_end else None)
        add("total", committed - created)
    return {k: round(statistics.median(v), 2) for k, v in out.items()}


def _inprocess(demo: dict, images: int, batch_rows: int) -> dict:
    """The same images inserted in process, in a child process (see the module docstring)."""
    home = pathlib.Path(tempfile.mkdtemp(prefix="pxt-scaleout-inprocess-"))
    try:
        env = {k: v for k, v in demo["env"].items() if not k.startswith(("PXT_DEMO_WATCH", "PXT_CELERY_"))}
        env.update({"PIXELTABLE_DB_URL": demo["pg"].create_database("inprocess"), "PIXELTABLE_HOME": str(home),
                    "DAGSTER_HOME": str(home / "dagster"), "PXT_DEMO_DEST": f"s3://{demo['bucket']}/inprocess/",
                    "PIXELTABLE_OUTPUT_MEDIA_DEST": f"s3://{demo['bucket']}/inprocess-generated/"})
        (home / "dagster").mkdir()
        sources = [f"s3://{demo['bucket']}/incoming/img_{i:04d}.jpg" for i in range(images)]
        done = subprocess.run([sys.executable, "-m", "bench.scaleout", "--inprocess-child", str(batch_rows)],
                              input=json.dumps(sources), env=env, capture_output=True, text=True,
                              cwd=pathlib.Path(__file__).resolve().parents[1])
        if done.returncode != 0:
            raise SystemExit(f"the in-process side failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _inprocess_child(batch_rows: int) -> None:
    from pxt_assets.definitions import code_table

    sources = json.loads(sys.stdin.read())
    table = code_table("blob_storage_demo/media")
    started = time.perf_counter()
    errors = 0
    for i in range(0, len(sources), batch_rows):
        status = table.insert([{"source_image": s} for s in sources[i:i + batch_rows]], on_error="ignore")
        errors += status.num_excs
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(sources), "errors": errors, "seconds": round(seconds, 2)}))


def main(argv: list[str] | None = None) -> None:
    from pxt_assets import scale_demo

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inprocess-child"]:
        _inprocess_child(int(argv[1]))
        return
    parser = argparse.ArgumentParser(prog="python -m bench scaleout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--batch-rows", type=int, default=100)
    parser.add_argument("--fixed-samples", type=int, default=3, help="1-row batches timed for fixed_cost_s")
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process side (ratio: null)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--executor", choices=scale_demo.EXECUTORS, default="runs",
                        help="runs: a batch's run is one Celery task, its steps in that process (the default); "
                             "steps: the daemon starts a process per run, and each step is a Celery task")
    args = parser.parse_args(argv)

    def then(demo: dict) -> dict:
        store, slug = demo["store"], scale_demo.TABLE_SLUG
        main_batches = store.batch_times(slug)
        first_created = min(t[2] for t in main_batches)
        last_committed = max(t[3] for t in main_batches)
        rows_per_s = args.images / (last_committed - first_created)
        durations = [t[3] - t[2] for t in main_batches]
        print(f"distributed: {args.images} rows in {len(main_batches)} batches, "
              f"{last_committed - first_created:.1f} s ({rows_per_s:.2f} rows/s)", flush=True)
        fixed, fixed_batches = [], []
        for k in range(args.fixed_samples):
            i = args.images + k
            demo["s3"].put_object(Bucket=demo["bucket"], Key=f"incoming/img_{i:04d}.jpg",
                                  Body=scale_demo._image(i), ContentType="image/jpeg")
            demo["wait_for"](i + 1, poll_s=0.2)
            batch, rows, created, committed = store.batch_times(slug)[-1]
            fixed.append(committed - created)
            fixed_batches.append(batch)
            print(f"1-row batch {k + 1}/{args.fixed_samples}: {committed - created:.2f} s", flush=True)
        phases = _phases(demo["instance"], store, slug, fixed_batches)
        print(f"phases of a 1-row batch (medians, s): {json.dumps(phases)}", flush=True)
        inprocess = None if args.no_inprocess else _inprocess(demo, args.images, args.batch_rows)
        if inprocess is not None:
            print(f"in process: {json.dumps(inprocess)}", flush=True)
        in_rows_per_s = inprocess["rows"] / inprocess["seconds"] if inprocess else None
        return {"main_rows_per_s": rows_per_s, "inprocess": inprocess, "in_rows_per_s": in_rows_per_s,
                "fixed": fixed, "phases": phases, "main_batches": len(main_batches),
                "batch_s_p50": statistics.median(durations)}

    root = pathlib.Path(tempfile.mkdtemp(prefix="pxt-bench-scaleout-"))
    os.chmod(root, 0o755)
    try:
        result = scale_demo.run(args.images, args.batch_rows, args.timeout, root, then=then, executor=args.executor)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    inprocess, in_rows_per_s = result["inprocess"], result["in_rows_per_s"]
    print(json.dumps({
        "rows": args.images,
        "errors": result["errors"] + (inprocess["errors"] if inprocess else 0),
        "rows_per_s": round(result["main_rows_per_s"], 2),
        "inprocess_rows_per_s": round(in_rows_per_s, 2) if in_rows_per_s else None,
        "ratio": round(result["main_rows_per_s"] / in_rows_per_s, 3) if in_rows_per_s else None,
        "fixed_cost_s": round(statistics.median(result["fixed"]), 2) if result["fixed"] else None,
        "batches": result["main_batches"],
        "batch_rows": args.batch_rows,
        "batch_s_p50": round(result["batch_s_p50"], 2),
        "fixed_cost_samples": [round(f, 2) for f in result["fixed"]],
        "phases_s": result["phases"],
        "seconds": result["seconds"],
        "steps_by_worker": result["steps_by_worker"],
        "inprocess_seconds": inprocess["seconds"] if inprocess else None,
        "executor": args.executor,
    }))


if __name__ == "__main__":
    main()
