"""The only module that imports Dagster's private internals (`dagster._*`), each where no public API does it.

Dagster keeps `dagster._*` private and changes it between minor releases. Everything else in pxt_assets uses the
public API (`dagster`, `dagster_aws`, ...). `pxt_assets_tests/test_dagster_compat.py` imports every name below
and checks the signatures and attributes pxt_assets relies on, so a Dagster upgrade that changes one fails
there, naming it, rather than at run time.

Importing this module imports Dagster's SQLite storages (already loaded by any process that opens an instance);
the CLI helpers are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# -- Submitting a run of a code location's job through the instance (pxt_assets/launch.py) -------------------
# Why: no public Python API creates a run of a job in a workspace's code location and submits it to the
# instance's run coordinator (as the UI does). The public equivalent, `dagster job launch`, runs these same
# functions in a new process: about 1.2 s more per submitted batch on this machine (dagster's import).
# _create_run(instance, code_location, remote_repo, remote_job, run_config, tags, op_selection, run_id) -> DagsterRun
# These come from Dagster's CLI package, imported when first used (module __getattr__ below): a process that
# only loads the code location (a script's defs(), a notebook) does not need dagster._cli (0.1 s of imports).
_CLI_NAMES = {
    "_create_run": "dagster._cli.job",
    "WorkspaceOpts": "dagster._cli.workspace.cli_target",
    "get_code_location_from_workspace": "dagster._cli.workspace.cli_target",
    "get_remote_job_from_remote_repo": "dagster._cli.workspace.cli_target",
    "get_remote_repository_from_code_location": "dagster._cli.workspace.cli_target",
    "get_workspace_from_cli_opts": "dagster._cli.workspace.cli_target",
}


if TYPE_CHECKING:
    from dagster._cli.job import _create_run
    from dagster._cli.workspace.cli_target import (
        WorkspaceOpts,
        get_code_location_from_workspace,
        get_remote_job_from_remote_repo,
        get_remote_repository_from_code_location,
        get_workspace_from_cli_opts,
    )


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: the names above, imported on first use
    if name in _CLI_NAMES:
        import importlib

        value = getattr(importlib.import_module(_CLI_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- Whether Dagster is rebuilding the code location in a run's or a step's process (pxt_assets/definitions.py) --
# Why: Dagster calls the location's `defs()` again for each job subset it reconstructs in one process (six
# times in a run worker, twice in each step process); pxt_assets.definitions builds it once there.
# Only Dagster's load context says that a call is such a reconstruction rather than a code server's load.
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType

# -- Names Dagster refuses for an op output (pxt_assets/api/table.py) ---------------------------------------
# Why: each column is an asset output named after the column; Dagster refuses some names (Python keywords,
# "context", "config", ...) only when the definitions are built. The list is not public; copying it would
# drift from the installed Dagster.
from dagster._core.definitions.utils import DISALLOWED_NAMES

# -- Which instance runs a batch where (pxt_assets/launch.py) -----------------------------------------------
# Why: whether an instance's storage is SQLite (local to this machine) or shared, and whether its run
# coordinator launches a submitted run at once, are only answered by their classes: `dagster` exports
# QueuedRunCoordinator but neither DefaultRunCoordinator nor SqliteRunStorage (below).
from dagster._core.run_coordinator import DefaultRunCoordinator

#: where dagster.yaml names DefaultRunCoordinator (Dagster's documented `run_coordinator: module:` value; the
#: scale demo's instance launches runs at submit: pxt_assets/scale_demo.py)
DEFAULT_RUN_COORDINATOR_MODULE = DefaultRunCoordinator.__module__.rpartition(".")[0]

# -- The embedded instance's SQLite storage (pxt_assets/instance.py) ----------------------------------------
# Why: the public `storage: sqlite:` config has no setting for SQLite's pragmas or connection pooling, and
# there is no public storage class to extend. pxt_assets.instance subclasses Dagster's own SQLite storages
# (same files, same layout) to commit with synchronous=NORMAL in WAL mode, keep pooled connections and copy
# new run shards from a template, overriding these private members:
#   SqliteRunStorage: `_conn_string`, `connect()`, `dispose()`, `from_local()`
#   SqliteEventLogStorage: `_initdb(engine, for_index_shard)`, `_connect(shard)`, `conn_string_for_shard()`,
#     `_db_lock`, `_initialized_dbs`, `wipe()`, `dispose()`
#   DagsterSqliteStorage: `__init__` re-done with the classes swapped (`base_dir`, `_run_storage`,
#     `_event_log_storage`, `_schedule_storage`, `_inst_data`), `from_local()`
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)


def reconstructing() -> bool:
    """Whether the definitions being loaded now are a reconstruction (a run worker's, a step process's) of a
    code location that was loaded before, rather than a code server's (or a script's) load of it."""
    return (DefinitionsLoadContext.is_set()
            and DefinitionsLoadContext.get().load_type == DefinitionsLoadType.RECONSTRUCTION)


__all__ = [
    "DagsterStorage", "INDEX_SHARD_NAME", "SqliteEventLogStorage", "SqliteRunStorage", "SqliteScheduleStorage",
    "create_engine", "SQLITE_BUSY_TIMEOUT_SECONDS", "create_db_conn_string", "DagsterSqliteStorage",
    "_event_logs_directory", "_runs_directory", "_schedule_directory",
    "DefaultRunCoordinator",
    "_create_run", "WorkspaceOpts", "get_code_location_from_workspace", "get_remote_job_from_remote_repo",
    "get_remote_repository_from_code_location", "get_workspace_from_cli_opts",
    "DISALLOWED_NAMES",
    "DefinitionsLoadContext", "DefinitionsLoadType", "reconstructing",
]
