"""`python -m pxt_assets scale-demo [--images N]` (`./dev scale-demo`): the demo table scaled out on
127.0.0.1, with no shared disk (docs/scale.md).

Starts a throwaway PostgreSQL cluster (Dagster's storage and the row store), Redis (Celery's broker), a moto
S3 server (the shared bucket), the Dagster daemon, and two Celery workers, each process with its own empty
PIXELTABLE_HOME and DAGSTER_HOME. Puts N generated images into the demo table's watched prefix; the sensor
makes batches of a few rows, the daemon launches their runs, and the workers run the steps. Waits until every
row is materialized, checks every row's files exist in the bucket, stops everything it started, and prints
one JSON object as its last line: {"rows", "errors", "batches", "steps_by_worker", "max_concurrent_steps",
"shared_disk": false, "seconds"}.

Needs the `scale-demo` extra (`[distributed]` and moto's server), and PostgreSQL's and Redis' server binaries
(Debian's `postgresql` and `redis-server`; `./dev scale-demo` installs them).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from pxt_assets import fsutil

#: where the pxt_assets package is imported from (a checkout or site-packages): the processes import it too
PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
TABLE_SLUG = "blob_storage_demo__media"
COLUMNS = ("source_image", "flipped", "rotated", "thumbnail", "width", "height", "serving_url")


def _image(i: int) -> bytes:
    import PIL.Image

    img = PIL.Image.new("RGB", (96 + i % 7, 64 + i % 5), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


class Services:
    """Everything the demo starts, stopped by PID (process groups) whatever happens."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stoppers: list = []

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("w")
        proc = subprocess.Popen(args, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for stop in reversed(self.stoppers):
            stop()


def run(images: int, batch_rows: int, timeout_s: float, root: pathlib.Path) -> dict:
    import logging

    from pxt_assets.localservers import MotoS3, Postgres, free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    started = time.monotonic()
    services = Services(root)
    try:
        pg = Postgres()
        services.stoppers.append(pg.stop)
        dagster_db = pg.create_database("dagster").replace("+psycopg:", "+psycopg2:")
        rows_db = pg.create_database("rows")
        redis_port = free_port()
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        services.spawn("redis", [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], dict(os.environ))
        moto = MotoS3()
        services.stoppers.append(moto.stop)
        s3 = moto.client()
        bucket = f"scale-demo-{os.getpid()}"
        s3.create_bucket(Bucket=bucket)
        broker = f"redis://127.0.0.1:{redis_port}/0"
        backend = f"redis://127.0.0.1:{redis_port}/1"
        fsutil.atomic_write(root / "celery.yaml", json.dumps({"execution": {"config": {"broker": broker, "backend": backend}}}))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_", "AWS_"))}
        base.update({
            "PIXELTABLE_DB_URL": rows_db,
            "PIXELTABLE_OUTPUT_MEDIA_DEST": f"s3://{bucket}/generated/",
            "PXT_DEMO_DEST": f"s3://{bucket}/demo/",
            "PXT_DEMO_WATCH": f"s3://{bucket}/incoming/",
            "PXT_DEMO_WATCH_INTERVAL": "2",
            "PXT_DEMO_WATCH_BATCH_ROWS": str(batch_rows),
            "PXT_CELERY_BROKER": broker, "PXT_CELERY_BACKEND": backend,
            "AWS_ENDPOINT_URL": moto.endpoint, "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "PYTHONPATH": os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # dagster-celery runs `celery`
        })

        def process_env(name: str) -> dict[str, str]:
            """A home of its own (nothing shared on disk) and a DAGSTER_HOME whose dagster.yaml names the
            shared PostgreSQL storage."""
            home, dagster_home = root / name / "pxt_home", root / name / "dagster_home"
            home.mkdir(parents=True)
            dagster_home.mkdir(parents=True)
            fsutil.atomic_write(dagster_home / "dagster.yaml",
                                f"storage:\n  postgres:\n    postgres_url: {dagster_db}\ntelemetry:\n  enabled: false\n")
            return {**base, "PIXELTABLE_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "PXT_WORKER_NAME": name}

        workers = ["worker1", "worker2"]
        for name in workers:
            services.spawn(name, [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                  "-y", str(root / "celery.yaml"), "-n", f"{name}@127.0.0.1", "--",
                                  "--concurrency", "2"], process_env(name))
        daemon_env = process_env("daemon")
        daemon_env.pop("PXT_WORKER_NAME")
        fsutil.atomic_write(root / "workspace.yaml", json.dumps({"load_from": [{"python_module": {  # as the repo's
            "module_name": "pxt_assets.definitions", "location_name": "pxt_assets"}}]}))
        services.spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(root / "workspace.yaml")],
                       daemon_env)

        for i in range(images):
            s3.put_object(Bucket=bucket, Key=f"incoming/img_{i:04d}.jpg", Body=_image(i), ContentType="image/jpeg")

        from pxt_assets import rowstore

        store = rowstore.RowStore(rows_db)
        deadline = time.monotonic() + timeout_s
        while True:
            services.check_alive()
            committed = store.batches(TABLE_SLUG, rowstore.COMMITTED)
            rt = store.row_table(TABLE_SLUG)
            done = store.count(rt) if rt is not None and committed else 0
            pending = store.batches(TABLE_SLUG, rowstore.PENDING)
            if done >= images and not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{images} rows after {timeout_s:.0f} s; daemon log:\n"
                                   f"{services.log('daemon')}\nworker1:\n{services.log('worker1')}")
            time.sleep(1)

        # every row complete, every file in the bucket
        values = {}
        for batch in committed:
            got = store.read_columns(rt, batch, list(COLUMNS))
            for column in COLUMNS:
                for rid, rec in got.get(column, {}).items():
                    values.setdefault(rid, {})[column] = rec
        errors = sum(1 for row in values.values() for rec in row.values() if rec.get("error"))
        keys = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys |= {f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", [])}
        missing = [rec["value"] for row in values.values() for c in ("source_image", "flipped", "rotated", "thumbnail")
                   if (rec := row.get(c)) and rec.get("value") and rec["value"] not in keys]
        if missing or len(values) != images:
            raise RuntimeError(f"{len(values)} rows for {images} images; files missing from the bucket: {missing[:5]}")

        # who ran what, from the event log of the shared instance
        import dagster as dg

        os.environ["DAGSTER_HOME"] = daemon_env["DAGSTER_HOME"]
        instance = dg.DagsterInstance.get()
        steps_by_worker = dict.fromkeys(workers, 0)
        spans: list[tuple[float, float]] = []
        batch_runs = [r for r in instance.get_run_records() if r.dagster_run.job_name.endswith("__batch_job")]
        run_spans = [(r.start_time, r.end_time) for r in batch_runs if r.start_time and r.end_time]
        for record in instance.get_run_records():
            starts, ends = {}, {}
            for entry in instance.all_logs(record.dagster_run.run_id):
                event = entry.dagster_event
                if entry.user_message.startswith("pxt worker "):
                    name = entry.user_message.split()[2].rstrip(":")
                    steps_by_worker[name] = steps_by_worker.get(name, 0) + 1
                if event is None or entry.step_key is None:
                    continue
                if event.event_type == dg.DagsterEventType.STEP_START:
                    starts[entry.step_key] = entry.timestamp
                elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                    ends[entry.step_key] = entry.timestamp
            spans += [(starts[k], ends[k]) for k in starts if k in ends]
        return {"rows": len(values), "errors": errors, "batches": len(committed), "steps_by_worker": steps_by_worker,
                "max_concurrent_steps": _most_at_once(spans), "max_concurrent_batches": _most_at_once(run_spans),
                "shared_disk": False, "seconds": round(time.monotonic() - started, 1)}
    finally:
        services.stop()


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = most = 0
    for _, delta in points:
        current += delta
        most = max(most, current)
    return most


def main(images: int = 24, batch_rows: int | None = None, timeout_s: float = 600) -> dict:
    """Run the demo in a temporary folder (removed after); returns the result `run` returns."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="pxt-scale-demo-"))
    os.chmod(root, 0o755)
    try:
        return run(images, batch_rows or max(1, images // 6), timeout_s, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
