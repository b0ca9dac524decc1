"""Runs that go through the Dagster instance (its run coordinator and launcher), never nested in a process.

On a shared instance (storage that is not the embedded SQLite: PostgreSQL), a batch's run is submitted like
one launched from the UI: the run coordinator queues it, the daemon launches it with the deployment's run
launcher, and the job's executor (in-process, multiprocess, Celery...) runs its steps wherever the
deployment puts them. The caller (a notebook's `insert`, the insert job's op, a backfill) waits for the run
and reports its outcome. The embedded default keeps running batches in process: no daemon is needed there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from pxt_assets import console, dagster_compat, fsutil

#: how often a waiting caller looks at the run's status
_POLL_S = 0.5


def execute_in_process(job: dg.JobDefinition, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(**kwargs)`, in a thread of its own when this thread runs an event loop (a Jupyter
    kernel's cell runs inside the kernel's asyncio loop). Dagster gives each run an event loop of its own and,
    when the run ends, runs `loop.shutdown_asyncgens()` on it; in a thread whose loop is running, that call
    refuses to start (RuntimeError, which Dagster ignores) and the coroutine it was given is never awaited:
    a RuntimeWarning on stderr after every insert. In a thread without a loop, Dagster's loop starts and closes
    cleanly. The run sees this thread's context variables (progress bars, settings)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return job.execute_in_process(**kwargs)
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pxt-run") as pool:
        return pool.submit(context.run, job.execute_in_process, **kwargs).result()


def is_shared(instance: dg.DagsterInstance) -> bool:
    """Whether runs on `instance` should be submitted rather than executed in process: its storage is not
    SQLite (e.g. dagster-postgres), so other processes and machines (the daemon, workers) share it."""
    if instance.is_ephemeral:
        return False
    storage: Any = instance.run_storage
    inner = getattr(getattr(storage, "_storage", None), "run_storage", storage)  # LegacyRunStorage wraps one
    return not isinstance(inner, dagster_compat.SqliteRunStorage)


def launches_at_once(instance: dg.DagsterInstance) -> bool:
    """Whether a run submitted to `instance` starts without a daemon (its run coordinator launches it
    immediately, as the embedded default's dagster.yaml asks), or the instance is shared (a daemon runs)."""
    return is_shared(instance) or isinstance(instance.run_coordinator, dagster_compat.DefaultRunCoordinator)


def shared_deployment(settings: Any) -> bool:
    """Whether steps may run on other machines: rows in a shared database (db_url) and a shared Dagster
    instance under DAGSTER_HOME. Then no machine's local files are seen by the others: inserted local files
    go to a bucket at insert time, and local destinations are refused."""
    if not settings.db_url or settings.db_url.startswith("sqlite"):
        return False
    from pxt_assets.instance import get_instance

    try:
        return is_shared(get_instance())
    except Exception:  # noqa: BLE001 - no instance configured here: not a deployment
        return False


def _origin_target() -> dict[str, Any]:
    """Where the code location's definitions are, named as the deployment's workspace names it (the daemon
    finds the run's code location by that name): PXT_CODE_LOCATION_MODULE (default pxt_assets.definitions)
    as PXT_CODE_LOCATION_NAME (default pxt_assets, as this repository's workspace.yaml), loaded from the
    working directory."""
    return {"python_module": {"module_name": os.environ.get("PXT_CODE_LOCATION_MODULE", "pxt_assets.definitions"),
                              "location_name": os.environ.get("PXT_CODE_LOCATION_NAME", "pxt_assets"),
                              "working_directory": os.getcwd()}}


def target_of_run(run: Any) -> dict[str, Any] | None:
    """The code location a run was launched from (an op submitting a run of its own code location)."""
    origin = getattr(getattr(getattr(run, "remote_job_origin", None), "repository_origin", None),
                     "code_location_origin", None)
    loadable = getattr(origin, "loadable_target_origin", None)
    if loadable is None:
        return _target_of_code(run)
    entry: dict[str, Any] = {"location_name": origin.location_name,
                             "working_directory": loadable.working_directory or os.getcwd()}
    if loadable.module_name:
        return {"python_module": {**entry, "module_name": loadable.module_name}}
    if loadable.python_file:
        return {"python_file": {**entry, "relative_path": loadable.python_file}}
    if loadable.package_name:
        return {"python_package": {**entry, "package_name": loadable.package_name}}
    return None


def _target_of_code(run: Any) -> dict[str, Any] | None:
    """The module or file a run's job was loaded from when it has no code location of its own (`dagster job
    execute -m my_tables -a defs`: the run executes in the command's process), so the batch run it submits
    loads the same definitions."""
    pointer = getattr(getattr(getattr(run, "job_code_origin", None), "repository_origin", None), "code_pointer", None)
    module, path = getattr(pointer, "module", None), getattr(pointer, "python_file", None)
    if not (module or path):
        return None
    # the name the deployment's workspace gives the location: PXT_CODE_LOCATION_NAME, else this repository's
    # for its own definitions (workspace.yaml), else the module's (Dagster's default for `-m module`)
    default = "pxt_assets" if module in (None, "pxt_assets.definitions") else module
    entry: dict[str, Any] = {"location_name": os.environ.get("PXT_CODE_LOCATION_NAME", default),
                             "working_directory": getattr(pointer, "working_directory", None) or os.getcwd()}
    if getattr(pointer, "fn_name", None):
        entry["attribute"] = pointer.fn_name
    if module:
        return {"python_module": {**entry, "module_name": module}}
    return {"python_file": {**entry, "relative_path": path}}


@contextlib.contextmanager
def _workspace(instance: dg.DagsterInstance, target: dict[str, Any]) -> Iterator[Any]:
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory(prefix="pxt-workspace-") as folder, contextlib.ExitStack() as stack:
        path = os.path.join(folder, "workspace.yaml")
        fsutil.atomic_write(path, yaml.safe_dump({"load_from": [target]}))
        # The code server starts here; the runs it launches, and their step processes, are its children. Their
        # stderr comes through this process without Dagster's console lines (unless PXT_VERBOSE).
        with console.quiet_descendants():
            workspace = stack.enter_context(dagster_compat.get_workspace_from_cli_opts(
                instance, version=dg.__version__, workspace_opts=dagster_compat.WorkspaceOpts(workspace=(path,)),
                log_level="WARNING"))
        yield workspace


def submit_and_wait(instance: dg.DagsterInstance, job_name: str, partition_key: str, *,
                    tags: dict[str, str] | None = None, target: dict[str, Any] | None = None,
                    log: Any = None, timeout_s: float | None = None) -> Any:
    """Submit a run of `job_name` for one partition through the instance and wait until it ends; returns the
    finished DagsterRun. A run that stays queued (no daemon running) is reported after a while."""
    with _workspace(instance, target or _origin_target()) as workspace:
        location = dagster_compat.get_code_location_from_workspace(workspace, None)
        repo = dagster_compat.get_remote_repository_from_code_location(location, None)
        try:
            job = dagster_compat.get_remote_job_from_remote_repo(repo, job_name)
        except Exception as e:  # noqa: BLE001 - say what to do about it
            raise RuntimeError(
                f"job {job_name!r} is not in the code location {target or _origin_target()}: on a shared Dagster "
                "instance a batch runs where the deployment runs it, so its table must be in the code location "
                f"(made with pxt.create_table, or declared in the code) ({e})") from None
        run = dagster_compat._create_run(instance=instance, code_location=location, remote_repo=repo, remote_job=job,
                          run_config=console.run_config(),  # its events go to the event log, not stdout
                          tags={**(tags or {}), "dagster/partition": partition_key},
                          op_selection=None, run_id=None)
        instance.submit_run(run.run_id, workspace)
    say = log.info if log is not None else print
    say(f"submitted run {run.run_id} of {job_name} for batch {partition_key}")
    started, warned = time.monotonic(), False
    while True:
        current = instance.get_run_by_id(run.run_id)
        if current is not None and current.is_finished:
            return current
        waited = time.monotonic() - started
        if not warned and waited > 60 and current is not None and current.status == dg.DagsterRunStatus.QUEUED:
            say(f"run {run.run_id} is still queued after 60 s: is the Dagster daemon running "
                "(`dagster-daemon run`, or `dagster dev`)?")
            warned = True
        if timeout_s is not None and waited > timeout_s:
            raise TimeoutError(f"run {run.run_id} of {job_name} did not finish within {timeout_s:.0f} s")
        time.sleep(_POLL_S)


def failure_of(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first step failure's innermost message of a finished run, or a pointer to its logs."""
    records = instance.all_logs(run_id)
    for wanted in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE,
                   dg.DagsterEventType.ENGINE_EVENT):
        for record in records:
            event = record.dagster_event
            if event is None or event.event_type != wanted:
                continue
            error = getattr(event.event_specific_data, "error", None)
            if error is None:
                if wanted == dg.DagsterEventType.RUN_FAILURE and record.user_message:
                    return record.user_message.strip()
                continue
            while getattr(error, "cause", None) is not None:
                error = error.cause
            return error.message.strip()
    return f"see the logs of run {run_id}"


__all__ = ["is_shared", "submit_and_wait", "failure_of", "target_of_run"]
