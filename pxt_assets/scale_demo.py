"""`python -m pxt_assets scale-demo [--images N]` (`./dev scale-demo`): the demo table scaled out on
127.0.0.1, with no shared disk (docs/scale.md).

Starts a throwaway PostgreSQL cluster (Dagster's storage and the row store), Redis (Celery's broker), a moto S3
server (the shared bucket), the Dagster daemon, and two Celery workers, each process with its own empty
PIXELTABLE_HOME, DAGSTER_HOME and HOME; each worker and the daemon in a mount namespace of its own where the host
allows (`unshare --mount`, as root or in a user namespace: private /tmp, demo folder and homes, the checkout
read-only; isolated()). Puts N generated images into the demo table's watched prefix; the sensor makes batches of a
few rows and the daemon submits their runs; the workers run them (`executor="runs"`, the default: each run is a
Celery task that runs all its steps; `"steps"`: the daemon starts a process per run, and each step is a Celery
task; EXECUTORS). Waits until every row is materialized,
checks every row's files exist in the bucket, scans both databases for local paths (local_paths_in_database), stops
everything it started, and prints one JSON object as its last line: {"rows", "errors", "batches",
"steps_by_worker", "max_concurrent_steps", "max_concurrent_batches", "shared_disk" (whether the scan found a local
path), "seconds", "local_paths" (the first 10 found), "isolation" ("mount-namespace" or "none"), "isolation_probe"
(per isolated process: the driver's files it saw, the read-only folders it could write)}.

Needs the `scale-demo` extra (`[distributed]` and moto's server), and PostgreSQL's and Redis' server binaries
(Debian's `postgresql` and `redis-server`; `./dev scale-demo` installs them).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

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


# -- each worker and the daemon in a mount namespace of its own ---------------------------------------------

#: the line an isolated process's shell writes to its log before it starts the command: what it found
PROBE_PREFIX = "pxt-isolation-probe: "


#: ways to start a process in a mount namespace of its own, tried in order: as root (or with CAP_SYS_ADMIN), and
#: as anyone where the kernel lets users make a user namespace (root in it, mapped to the caller outside)
NAMESPACE_OPTIONS = (["--mount", "--propagation", "private"],
                     ["--user", "--map-root-user", "--mount", "--propagation", "private"])


def mount_namespace_prefix() -> list[str] | None:
    """The command prefix that starts a process in a mount namespace of its own (`unshare`, NAMESPACE_OPTIONS),
    or None where this host cannot (no `unshare`, not allowed): each way is tried once, by doing in a throwaway
    namespace what isolated() does (a tmpfs over /tmp, the checkout bind-mounted read-only)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    trial = (f"mount -t tmpfs pxt-probe /tmp && mount --bind {_q(PACKAGE_ROOT)} {_q(PACKAGE_ROOT)} && "
             f"mount -o remount,bind,ro {_q(PACKAGE_ROOT)}")
    for options in NAMESPACE_OPTIONS:
        prefix = [unshare, *options]
        try:
            done = subprocess.run([*prefix, "sh", "-c", trial], capture_output=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return None


def isolated(prefix: list[str], args: list[str], env: dict[str, str], *, cwd: pathlib.Path,
             private: list[pathlib.Path], files: dict[pathlib.Path, str], read_only: list[pathlib.Path],
             driver_files: list[pathlib.Path]) -> tuple[list[str], dict[str, str]]:
    """`args` run through `prefix` (mount_namespace_prefix()) and a shell that, in the new namespace, first:

    - mounts an empty private tmpfs over each of `private` (made first if missing; in order, so a folder inside
      an earlier one is made in that one's tmpfs): what the driver and other processes wrote there is hidden;
    - writes `files` (path -> text, each inside a private folder): the config the driver hands the process
      (its dagster.yaml, celery.yaml), passed in the environment and written into the private tmpfs;
    - bind-mounts each of `read_only` over itself read-only (the checkout: code is shared, nothing is written);
    - changes to `cwd` again (resolving it in the new mounts: the inherited working directory would still be the
      driver's folder beneath them);
    - probes: writes to its output a line (PROBE_PREFIX) for each of `driver_files` it can see and each of
      `read_only` it could write, then one saying it is done (probe_result() reads them);

    then execs `args`. Returns the command and its environment."""
    env = dict(env)
    script = ["set -eu"]
    for folder in private:
        mode = "1777" if str(folder) in ("/tmp", "/var/tmp", "/dev/shm") else "0755"
        script.append(f"mkdir -p {_q(folder)} && mount -t tmpfs -o mode={mode} pxt-private {_q(folder)}")
    for i, (path, text) in enumerate(files.items()):
        if not any(path.is_relative_to(folder) for folder in private):
            raise ValueError(f"{path} is in none of the private folders {private}: writing it would write the "
                             f"host's disk")
        env[f"PXT_ISOLATED_FILE_{i}"] = text
        script.append(f'mkdir -p {_q(path.parent)} && printf "%s" "$PXT_ISOLATED_FILE_{i}" > {_q(path)}'
                      f" && unset PXT_ISOLATED_FILE_{i}")
    for folder in read_only:
        script.append(f"mount --bind {_q(folder)} {_q(folder)} && mount -o remount,bind,ro {_q(folder)}")
    script.append(f"cd {_q(cwd)}")
    # the probe: one line per driver file it sees and per read-only folder it could write, then "done"
    for f in driver_files:
        script.append(f"if [ -e {_q(f)} ]; then echo {_q(PROBE_PREFIX + 'seen ' + str(f))}; fi")
    for f in read_only:
        script.append(f"if [ -w {_q(f)} ]; then echo {_q(PROBE_PREFIX + 'writable ' + str(f))}; fi")
    script.append(f"echo {_q(PROBE_PREFIX + 'done')}")
    script.append('exec "$@"')
    return [*prefix, "sh", "-c", "\n".join(script), "pxt-isolated", *args], env


def _q(path: pathlib.Path | str) -> str:
    import shlex

    return shlex.quote(str(path))


def probe_result(log: str) -> dict | None:
    """What an isolated process's probe found (isolated()), from its log: {"driver_files_seen": [...],
    "read_only_writable": [...]}; None if the probe did not finish."""
    found: dict[str, list[str]] = {"driver_files_seen": [], "read_only_writable": []}
    for line in log.splitlines():
        if line.startswith(PROBE_PREFIX):
            what, _, path = line[len(PROBE_PREFIX):].partition(" ")
            if what == "done":
                return found
            found["driver_files_seen" if what == "seen" else "read_only_writable"].append(path)
    return None


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

    def log(self, name: str, tail: int | None = 4000) -> str:
        """The end of a process's log (`tail` characters; None: all of it)."""
        path = self.root / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text if tail is None else text[-tail:]

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


#: how the workers take batches (`run(executor=...)`, docs/scale.md "Executor"): "runs" (the default), each
#: batch's run is a Celery task (dagster-celery's CeleryRunLauncher) whose steps run in that task's process; "steps",
#: the daemon starts each run in a process of its own and the Celery executor sends each step to a worker
EXECUTORS = ("runs", "steps")


def instance_yaml(dagster_db: str, executor: str, broker: str, backend: str) -> str:
    """The dagster.yaml every process of the demo has: the shared PostgreSQL storage and, for the "runs" executor,
    runs launched as Celery tasks as soon as they are submitted (DefaultRunCoordinator: Celery's queue is the
    queue; the daemon's QueuedRunCoordinator would first hold each run for up to its dequeue interval, 5 s)."""
    from pxt_assets.dagster_compat import DEFAULT_RUN_COORDINATOR_MODULE

    text = f"storage:\n  postgres:\n    postgres_url: {dagster_db}\ntelemetry:\n  enabled: false\n"
    if executor == "runs":
        text += (f"run_coordinator:\n  module: {DEFAULT_RUN_COORDINATOR_MODULE}\n  class: DefaultRunCoordinator\n"
                 "run_launcher:\n  module: dagster_celery.launcher\n  class: CeleryRunLauncher\n"
                 f"  config:\n    default_queue: dagster\n    broker: {broker}\n    backend: {backend}\n")
    return text


def run(images: int, batch_rows: int, timeout_s: float, root: pathlib.Path, then=None,
        executor: str = "runs") -> dict:
    """The demo (module docstring) in `root`, the workers taking batches as `executor` says (EXECUTORS); returns
    its result. `then(demo)`, if given, is called once every
    row is checked and before anything stops, with a dict of what runs (`store`, `s3`, `bucket`, `pg`, `env`:
    the processes' shared environment, `instance`, `services`, `wait_for`: waits until a number of rows
    committed); what it returns is added to the result (bench/scaleout.py)."""
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
        # a bucket of this run's own: moto's servers in one process share their buckets (a second demo there)
        bucket = f"scale-demo-{os.getpid()}-{os.urandom(4).hex()}"
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
            # "runs": each run's steps in its Celery task's process; "steps": each step a Celery task of its own
            **({"PXT_EXECUTOR": "in_process"} if executor == "runs" else
               {"PXT_CELERY_BROKER": broker, "PXT_CELERY_BACKEND": backend}),
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
            fsutil.atomic_write(dagster_home / "dagster.yaml", instance_yaml(dagster_db, executor, broker, backend))
            return {**base, "PIXELTABLE_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "PXT_WORKER_NAME": name,
                    "HOME": str(root / name)}

        # The driver's own files: a process that is isolated must not see them (the probe looks for both).
        driver_files = [pathlib.Path("/tmp") / f"pxt-scale-demo-driver-{os.getpid()}-{root.name}.marker",
                        root / "driver.marker"]
        for marker in driver_files:
            fsutil.atomic_write(marker, "the scale demo's driver wrote this; its workers must not see it\n")
            services.stoppers.append(lambda marker=marker: marker.unlink(missing_ok=True))
        prefix = mount_namespace_prefix()
        isolation = "mount-namespace" if prefix else "none"

        def spawn(name: str, args: list[str], env: dict[str, str], config: pathlib.Path) -> None:
            """Starts a worker or the daemon: in a mount namespace of its own where this host allows one (its
            /tmp, the demo's folder and its homes private and empty but for `config` and its dagster.yaml; the
            checkout read-only), else as it is."""
            if prefix:
                home, dagster_home = pathlib.Path(env["PIXELTABLE_HOME"]), pathlib.Path(env["DAGSTER_HOME"])
                temps = [pathlib.Path(p) for p in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(p)]
                args, env = isolated(
                    prefix, args, env, cwd=root, private=[*temps, root, home, dagster_home],
                    files={p: p.read_text() for p in (config, dagster_home / "dagster.yaml")},
                    read_only=[PACKAGE_ROOT], driver_files=driver_files)
            services.spawn(name, args, env)

        # Dagster's storage made once, here: processes starting at once on an empty database race to make its
        # tables ("type jobs already exists")
        import dagster as dg

        daemon_env = process_env("daemon")
        daemon_env.pop("PXT_WORKER_NAME")
        dg.DagsterInstance.from_config(daemon_env["DAGSTER_HOME"]).dispose()

        workers = ["worker1", "worker2"]
        for name in workers:
            spawn(name, [str(BIN / "dagster-celery"), "worker", "start", "-A", "pxt_assets.celery_app",
                         "-y", str(root / "celery.yaml"), "-n", f"{name}@127.0.0.1", "--",
                         "--concurrency", "2"], process_env(name), root / "celery.yaml")
        fsutil.atomic_write(root / "workspace.yaml", json.dumps({"load_from": [{"python_module": {  # as the repo's
            "module_name": "pxt_assets.definitions", "location_name": "pxt_assets"}}]}))
        spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(root / "workspace.yaml")], daemon_env,
              root / "workspace.yaml")

        for i in range(images):
            s3.put_object(Bucket=bucket, Key=f"incoming/img_{i:04d}.jpg", Body=_image(i), ContentType="image/jpeg")

        from pxt_assets import rowstore

        store = rowstore.RowStore(rows_db)

        def wait_for(rows: int, timeout_s: float = timeout_s, poll_s: float = 1) -> list[str]:
            """Waits until `rows` rows are committed and no batch is pending; returns the committed batches."""
            deadline = time.monotonic() + timeout_s
            while True:
                services.check_alive()
                committed = store.batches(TABLE_SLUG, rowstore.COMMITTED)
                rt = store.row_table(TABLE_SLUG)
                done = store.count(rt) if rt is not None and committed else 0
                pending = store.batches(TABLE_SLUG, rowstore.PENDING)
                if done >= rows and not pending:
                    return committed
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{done}/{rows} rows after {timeout_s:.0f} s; daemon log:\n"
                                       f"{services.log('daemon')}\nworker1:\n{services.log('worker1')}")
                time.sleep(poll_s)

        committed = wait_for(images)
        rt = store.row_table(TABLE_SLUG)

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
        # no local path reached the database: the rows, the catalog, Dagster's runs and event logs
        local_paths = local_paths_in_database(store, instance, roots=[root, PACKAGE_ROOT, tempfile.gettempdir()])
        probes = {name: probe_result(services.log(name, tail=None)) for name in (*workers, "daemon")} if prefix else {}
        extra = {} if then is None else then({"store": store, "s3": s3, "bucket": bucket, "pg": pg, "env": base,
                                              "instance": instance, "services": services, "wait_for": wait_for})
        return {"rows": len(values), "errors": errors, "batches": len(committed), "steps_by_worker": steps_by_worker,
                "max_concurrent_steps": _most_at_once(spans), "max_concurrent_batches": _most_at_once(run_spans),
                "shared_disk": bool(local_paths), "seconds": round(time.monotonic() - started, 1),
                "local_paths": local_paths[:10], "isolation": isolation, "isolation_probe": probes, **extra}
    finally:
        services.stop()


# -- what the database holds: no local path ------------------------------------------------------------------

#: the top folders of Linux and macOS file systems: a path under one of them is a local file
_TOP_FOLDERS = ("tmp", "home", "root", "work", "var", "usr", "opt", "srv", "mnt", "media", "data", "run", "dev",
                "etc", "proc", "sys", "lib", "bin", "nix", "scratch", "Users", "private", "Volumes")
#: a path starts where no URL or key could go on: `s3://b/tmp/x`, `https://h:1/home/x`, `generated/var/x`,
#: `~/x`, `./work/x` name no local file
_START = r"(?<![\w.~%:/@+-])"
_PATH_CHARS = r"[^\s\"'<>`|,;\\]"


def local_path_pattern(roots: list[str | os.PathLike] = ()) -> re.Pattern:
    """What a local path looks like: a `file:` URL, or an absolute path under a top folder (`/tmp/...`,
    `/home/...`; _TOP_FOLDERS) or under one of `roots` (folders of this host: the demo's, the checkout), that
    is not part of a URL or an object key."""
    starts = [f"{re.escape(f)}/" for f in _TOP_FOLDERS]
    starts += [f"{re.escape(str(r).strip('/'))}(?=/|\\b)" for r in roots if str(r).strip("/")]
    return re.compile(rf"(?i:\bfile:/){_PATH_CHARS}*|{_START}/(?:{'|'.join(starts)}){_PATH_CHARS}*")


#: run tags that say where a run's code runs, not data: the address of the code server the daemon started on
#: its own host (a Unix socket under its /tmp), which only its run launcher uses, to stop the run
_NOT_DATA_TAGS = frozenset({".dagster/grpc_info"})


def local_paths_in_database(store, instance, *, roots: list[str | os.PathLike] = ()) -> list[str]:
    """Every local path (local_path_pattern) the shared databases hold, as `where: path`, in the order found:

    - the row store (`store`, a RowStore): every text of every table (RowStore.stored_texts: catalog
      documents, batch manifests and sources, staged records, small values, and every row's values,
      destinations and error messages);
    - Dagster's run storage (`instance`, a DagsterInstance): each run's config and tags, and its event log
      (messages, step events, materializations and their metadata, errors).

    Not scanned: where each run's code is and runs (its executable and code location, which every host has of
    its own, and the `.dagster/grpc_info` tag: _NOT_DATA_TAGS), and the stack frames of errors (they name code
    files, not data). An empty list: nothing a process handed another went through a local disk."""
    import dagster as dg

    pattern = local_path_pattern(roots)
    found: list[str] = []
    seen: set[tuple[str, str]] = set()

    def scan(where: str, text: str) -> None:
        for m in pattern.finditer(text):
            key = (where.split()[0], m.group(0))  # each path once per table, and once in Dagster's runs
            if key not in seen:
                seen.add(key)
                found.append(f"{where}: {m.group(0)}")

    for where, text in store.stored_texts():
        scan(where, text)
    for run in instance.get_runs():
        scan(f"run {run.run_id} config", json.dumps(run.run_config, default=str))
        for key, value in run.tags.items():
            if key in _NOT_DATA_TAGS:
                continue
            scan(f"run {run.run_id} tag {key}", f"{key} {value}")
        for entry in instance.all_logs(run.run_id):
            what = entry.dagster_event.event_type_value if entry.dagster_event else "log"
            for text in _texts(json.loads(dg.serialize_value(entry))):
                scan(f"run {run.run_id} event {what}", text)
    return found


def _texts(value) -> Iterator[str]:
    """The strings in a serialized Dagster value (JSON), in order, but the stack frames of its errors."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)
    elif isinstance(value, dict):
        skip = "stack" if value.get("__class__") == "SerializableErrorInfo" else None
        for k, v in value.items():
            if k != skip:
                yield from _texts(v)


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = most = 0
    for _, delta in points:
        current += delta
        most = max(most, current)
    return most


def main(images: int = 24, batch_rows: int | None = None, timeout_s: float = 600, executor: str = "runs") -> dict:
    """Run the demo in a temporary folder (removed after); returns the result `run` returns."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="pxt-scale-demo-"))
    os.chmod(root, 0o755)
    try:
        return run(images, batch_rows or max(1, images // 6), timeout_s, root, executor=executor)
    finally:
        shutil.rmtree(root, ignore_errors=True)
