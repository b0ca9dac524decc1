"""Dagster's private names pxt_assets relies on (all in pxt_assets/dagster_compat.py) are still there, with the
signatures and attributes it uses: a Dagster upgrade that changes one fails here, naming it. Also: no other module
of the package reaches into `dagster._*`, `dagster definitions validate` passes, and the code
location module `pxt_assets.definitions` and the function `pxt.definitions` both keep working."""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_only_dagster_compat_uses_dagster_private_names():
    bad = []
    for path in sorted((REPO / "pxt_assets").rglob("*.py")):
        if path.name == "dagster_compat.py" and path.parent.name == "pxt_assets":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bdagster\._", line):
                bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, "use pxt_assets.dagster_compat (with the reason) or a public API:\n" + "\n".join(bad)


def test_the_sqlite_storages_instance_py_extends(tmp_path):
    from pxt_assets import dagster_compat as c

    assert _params(c.SqliteRunStorage.from_local)[:2] == ["base_dir", "inst_data"]
    assert _params(c.SqliteRunStorage.connect) == ["self"]
    assert _params(c.SqliteScheduleStorage.from_local)[:1] == ["base_dir"]
    assert _params(c.SqliteEventLogStorage.__init__)[:3] == ["self", "base_dir", "inst_data"]
    assert _params(c.SqliteEventLogStorage._initdb) == ["self", "engine", "for_index_shard"]
    assert _params(c.SqliteEventLogStorage._connect) == ["self", "shard"]
    assert _params(c.SqliteEventLogStorage.conn_string_for_shard) == ["self", "shard_name"]
    for cls in (c.SqliteRunStorage, c.SqliteEventLogStorage):
        assert callable(cls.dispose) and callable(cls.wipe)
    assert _params(c.DagsterSqliteStorage.__init__)[:3] == ["self", "base_dir", "inst_data"]
    assert issubclass(c.DagsterSqliteStorage, c.DagsterStorage)
    assert isinstance(c.INDEX_SHARD_NAME, str) and isinstance(c.SQLITE_BUSY_TIMEOUT_SECONDS, (int, float))
    assert _params(c.create_db_conn_string) == ["base_dir", "db_name"]
    assert _params(c.create_engine)[0] == "url"
    for fn in (c._runs_directory, c._event_logs_directory, c._schedule_directory):
        assert isinstance(fn(str(tmp_path)), str)

    # instance.SqliteStorage re-does DagsterSqliteStorage.__init__ with its own run and event log classes:
    # an attribute Dagster's __init__ sets that ours does not would be missing
    from pxt_assets.instance import SqliteStorage

    theirs = c.DagsterSqliteStorage(str(tmp_path / "theirs"))
    ours = SqliteStorage(str(tmp_path / "ours"))
    try:
        assert set(vars(theirs)) <= set(vars(ours)), set(vars(theirs)) - set(vars(ours))
        # the event log's _connect, as ours re-does it with a kept engine: the members it uses are there
        events = ours._event_log_storage
        assert {"_db_lock", "_initialized_dbs"} <= set(vars(events))
        source = inspect.getsource(c.SqliteEventLogStorage._connect)
        for name in ("_db_lock", "conn_string_for_shard", "_initialized_dbs", "_initdb"):
            assert name in source, f"SqliteEventLogStorage._connect no longer uses {name}"
        assert "_conn_string" in vars(ours._run_storage)  # our run storage's engine is made from it
    finally:
        theirs.dispose()
        ours.dispose()


def test_the_names_launch_py_uses_to_submit_a_run():
    from pxt_assets import dagster_compat as c

    assert _params(c._create_run) == ["instance", "code_location", "remote_repo", "remote_job", "run_config", "tags",
                                      "op_selection", "run_id"]
    assert _params(c.get_workspace_from_cli_opts)[:3] == ["instance", "version", "workspace_opts"]
    assert {"log_level"} <= set(_params(c.get_workspace_from_cli_opts))
    assert c.WorkspaceOpts(workspace=("workspace.yaml",)).workspace == ("workspace.yaml",)
    assert _params(c.get_code_location_from_workspace) == ["workspace", "code_location_name"]
    assert _params(c.get_remote_repository_from_code_location) == ["code_location", "provided_repo_name"]
    assert _params(c.get_remote_job_from_remote_repo) == ["remote_repo", "provided_name"]
    assert callable(c.DefaultRunCoordinator.submit_run)


def test_the_load_context_definitions_py_reads():
    from pxt_assets import dagster_compat as c

    assert {"INITIALIZATION", "RECONSTRUCTION"} <= set(c.DefinitionsLoadType.__members__)
    assert callable(c.DefinitionsLoadContext.is_set) and callable(c.DefinitionsLoadContext.get)
    assert c.DefinitionsLoadContext(load_type=c.DefinitionsLoadType.RECONSTRUCTION).load_type \
        == c.DefinitionsLoadType.RECONSTRUCTION


def test_the_names_dagster_reserves_for_outputs():
    from pxt_assets import dagster_compat as c

    assert {"context", "config", "def", "class"} <= set(c.DISALLOWED_NAMES)


def test_is_shared_tells_the_embedded_instance_apart(tmp_path):
    import dagster as dg

    from pxt_assets import launch
    from pxt_assets.instance import write_config

    instance = dg.DagsterInstance.from_config(str(write_config(tmp_path / "dagster")))
    try:
        assert not launch.is_shared(instance)
        assert launch.launches_at_once(instance)  # pxt_assets' dagster.yaml: DefaultRunCoordinator
    finally:
        instance.dispose()


def test_the_code_location_module_and_pxt_definitions_both_work():
    code = ("import pxt_assets as pxt\n"
            "import pxt_assets.definitions\n"
            "import pxt_assets.definitions as location\n"
            "from pxt_assets.definitions import defs\n"
            "assert callable(pxt_assets.definitions.defs) and location.load_tables and defs\n"
            "import dagster as dg\n"
            "assert isinstance(pxt.definitions(), dg.Definitions)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _env(home: pathlib.Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_"))}
    if home is not None:
        env["PIXELTABLE_HOME"] = str(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("args", [["dagster", "definitions", "validate", "-m", "pxt_assets.definitions"],
                                  ["dagster", "definitions", "validate", "-w", "workspace.yaml"],
                                  ["dagster", "definitions", "validate"]],  # pyproject's [tool.dagster]
                         ids=lambda a: " ".join(a))
def test_dagster_definitions_validate_passes(tmp_path, args):
    """(`dg check defs` and `dg list defs`: test_components.py)"""
    done = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, env=_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "All code locations passed validation" in out, out[-4000:]


def test_the_snapshot_a_code_server_makes_imports_no_component_library(tmp_path):
    """What every code server (the daemon's, the UI's at each reload) makes of the location: the repository
    snapshot. With a component tree attached to the Definitions, Dagster imports every installed component
    package (dagster_aws, _gcp, _azure...) to name the tree's types: seconds of each load."""
    code = ("import sys\n"
            "from pxt_assets.definitions import defs\n"
            "from dagster._core.remote_representation.external_data import RepositorySnap\n"
            "snap = RepositorySnap.from_def(defs().get_repository_def())\n"
            "assert any(n.asset_key.path[-1] == 'rotated' for n in snap.asset_nodes), snap.asset_nodes\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dagster_aws', 'dagster_gcp', 'dagster_azure')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(tmp_path / "home"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
