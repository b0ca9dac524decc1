"""The persistent catalog: tables made in one process are found by others and by the code location."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import yaml

import pxt_assets as pxt
from pxt_assets.api import merge_tables
from pxt_assets.instance import write_config
from pxt_assets_tests.conftest import SAMPLES

REPO = pathlib.Path(__file__).resolve().parents[1]


def _python(code: str, env_home: pathlib.Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_"))}
    env.update(PIXELTABLE_HOME=str(env_home), **extra)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_table_made_in_one_process_is_found_by_another_and_by_the_code_location(pxt_home, tmp_path, monkeypatch):
    out = tmp_path / "thumbs"
    out.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    pxt.create_dir("nb")
    t = pxt.create_table("nb/photos", {"photo": pxt.Image, "caption": pxt.String})
    t.add_computed_column(thumb=t.photo.thumbnail((32, 32)), destination=str(out))
    t.insert([{"photo": str(SAMPLES[0]), "caption": "a"}])

    code = ("import pxt_assets as pxt; t = pxt.get_table('nb/photos'); "
            "print(t.count(), t.spec.columns['thumb'].destination, pxt.list_tables())")
    done = _python(code, pxt_home, DAGSTER_HOME=str(tmp_path / "dh"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", out.as_uri(), "['nb/photos']"]

    code = ("from pxt_assets.definitions import defs; defs = defs(); "
            "print(sorted('/'.join(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys() "
            "if k.path[0] == 'nb'))")
    done = _python(code, pxt_home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['nb/photos/caption', 'nb/photos/photo', 'nb/photos/thumb']"


def test_a_corrupt_catalog_entry_shows_on_its_assets_and_the_rest_still_load(pxt_home):
    from pxt_assets import rowstore

    pxt.create_dir("ok")
    pxt.create_table("ok/good", {"img": pxt.Image})
    rowstore.for_settings(pxt.load_settings()).save_table_doc(
        "ok/broken", {"path": "ok/broken", "columns": [{"name": "x", "type": "NoSuchType"}]})
    code = textwrap.dedent("""
        import dagster as dg
        from pxt_assets.definitions import defs, load_tables
        print(sorted(t.path for t in load_tables()))
        d = defs()
        node = d.resolve_asset_graph().get(dg.AssetKey(["ok", "broken", "x"]))
        print(node.description)
        job = d.resolve_implicit_global_asset_job_def().get_subset(asset_selection={node.key})
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        print(result.success, [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure])
    """)
    done = _python(code, pxt_home)
    assert done.returncode == 0, done.stderr
    tables, description, outcome = done.stdout.strip().splitlines()[-3:]
    assert tables == "['blob_storage_demo/media', 'ok/good']"  # the demo (YAML) and the good catalog table
    assert description.startswith("Table 'ok/broken' cannot be loaded:") and "NoSuchType" in description
    assert outcome.startswith("False [") and "table 'ok/broken' cannot be loaded" in outcome and "NoSuchType" in outcome
    assert "table 'ok/broken' cannot be loaded" in done.stderr  # and a warning where the location loads


def test_same_path_in_code_and_catalog_with_different_columns_is_a_clear_error(pxt_home):
    code_table = pxt.MediaTable("dup/media", {"img": pxt.Image})
    code_table.add_computed_column(w=code_table.img.width)
    pxt.create_dir("dup")
    same = pxt.create_table("dup/media", {"img": pxt.Image})
    same.add_computed_column(w=same.img.width)
    assert merge_tables([code_table], [pxt.get_table("dup/media")]) == [code_table]
    same.add_computed_column(h=same.img.height)
    with pytest.raises(pxt.SpecError, match=r"'dup/media' is declared twice with different columns"):
        merge_tables([code_table], [pxt.get_table("dup/media")])


def test_without_dagster_home_runs_are_recorded_under_pixeltable_home(pxt_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code = ("import pxt_assets as pxt; pxt.create_dir('solo'); "
            f"t = pxt.create_table('solo/t', {{'img': pxt.Image}}); t.insert(img={str(SAMPLES[1])!r})")
    done = _python(code, pxt_home)
    assert done.returncode == 0, done.stderr
    assert "Inserted 1 row with 0 errors" in done.stdout
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(pxt_home / "dagster"))
    assert instance.get_dynamic_partitions("solo__t__batches") and instance.get_run_records()


def test_the_embedded_instance_is_dagsters_sqlite_layout_committing_with_synchronous_normal(pxt_home, tmp_path,
                                                                                              monkeypatch):
    import dagster as dg

    from pxt_assets.assets import asset_key
    from pxt_assets.instance import SqliteStorage

    home = write_config(tmp_path / "dh")  # as ./dev writes it
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    assert written["storage"]["custom"]["config"] == {"base_dir": str(home.resolve())}
    template = yaml.safe_load((REPO / "dagster.yaml").read_text())  # the repo's file says the same
    assert template["storage"]["custom"]["config"] == {}  # base_dir: $DAGSTER_HOME (else a temporary folder)
    template["storage"]["custom"]["config"] = written["storage"]["custom"]["config"]
    assert template == written
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # opens by path
    instance = dg.DagsterInstance.from_config(str(home))
    assert isinstance(instance.get_ref().storage_data.rehydrate(as_type=SqliteStorage), SqliteStorage)
    pxt.create_dir("emb")
    t = pxt.create_table("emb/t", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    run_id = t.insert([{"img": str(SAMPLES[0])}], instance=instance).run_id
    # Dagster's own files: the run's event shard, the index shard and runs.db, all in WAL mode
    shard = home / "history" / "runs" / f"{run_id}.db"
    assert shard.is_file() and (home / "history" / "runs" / "index.db").is_file() and (home / "history" / "runs.db").is_file()
    for connect in (lambda: instance.event_log_storage.run_connection(run_id),
                    instance.event_log_storage.index_connection, instance.run_storage.connect):
        with connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
    # ... readable by a plain Dagster instance with its default storage over the same folder
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    plain = dg.DagsterInstance.from_config(str(home))
    assert type(plain.event_log_storage).__name__ == "SqliteEventLogStorage"
    assert plain.get_run_by_id(run_id).is_success
    materialized = {e.dagster_event.asset_key for e in plain.all_logs(run_id)
                    if e.dagster_event and e.dagster_event.is_step_materialization}
    assert asset_key(t.spec, "w") in materialized


def test_the_embedded_instance_reuses_connections_but_never_writes_to_a_wiped_shard(pxt_home, tmp_path,
                                                                                    monkeypatch):
    import dagster as dg

    home = write_config(tmp_path / "dh")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = dg.DagsterInstance.from_config(str(home))
    pxt.create_dir("pool")
    t = pxt.create_table("pool/t", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    run_id = t.insert([{"img": str(SAMPLES[0])}], instance=instance).run_id
    events = instance.event_log_storage
    with events.run_connection(run_id) as conn:
        first = conn.connection.dbapi_connection
    with events.run_connection(run_id) as conn:
        assert conn.connection.dbapi_connection is first  # pooled: not reopened for every event
    shard = home / "history" / "runs" / f"{run_id}.db"
    events.wipe()
    assert not shard.exists()
    # an event for that run after the wipe lands in a new shard file that another instance reads
    instance.report_engine_event("written after the wipe", instance.get_run_by_id(run_id))
    assert shard.is_file()
    instance.dispose()
    other = dg.DagsterInstance.from_config(str(home))
    assert [e.message for e in other.all_logs(run_id)] == ["written after the wipe"]
    other.dispose()


def _shard_schema(path: pathlib.Path) -> tuple:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return (sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")),
                conn.execute("SELECT version_num FROM alembic_version").fetchall(),
                conn.execute("PRAGMA journal_mode").fetchone())


def test_new_run_shards_are_copies_of_an_empty_shard_dagster_initialised(pxt_home, tmp_path, monkeypatch):
    import dagster as dg
    from dagster._core.events.log import EventLogEntry
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    home = write_config(tmp_path / "dh")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = dg.DagsterInstance.from_config(str(home))
    pxt.create_dir("tpl")
    t = pxt.create_table("tpl/t", {"img": pxt.Image})
    run_id = t.insert([{"img": str(SAMPLES[0])}], instance=instance).run_id
    runs_dir = home / "history" / "runs"
    # Dagster's own storage, initialising a shard of its own in another folder
    plain = SqliteEventLogStorage(str(tmp_path / "plain"))
    with plain.run_connection("r1"):
        pass
    assert _shard_schema(runs_dir / f"{run_id}.db") == _shard_schema(tmp_path / "plain" / "r1.db")
    assert _shard_schema(runs_dir / f"{run_id}.db")[2] == ("wal",)
    assert not list(runs_dir.glob("*.tmp"))
    # a shard that exists already (another process made it) is used as it is, never replaced
    other = SqliteEventLogStorage(str(runs_dir))
    other.store_event(EventLogEntry(error_info=None, level="INFO", user_message="from another process",
                                    run_id="r2", timestamp=1.0))
    fresh = dg.DagsterInstance.from_config(str(home))
    assert [e.user_message for e in fresh.event_log_storage.get_logs_for_run("r2")] == ["from another process"]
    instance.dispose()
    fresh.dispose()


def test_catalog_rules_create_drop_and_list(pxt_home, capsys):
    with pytest.raises(pxt.SpecError, match="does not exist"):
        pxt.create_table("nowhere/t", {"img": pxt.Image})
    pxt.create_dir("d1")
    assert "Created directory 'd1'." in capsys.readouterr().out
    pxt.create_table("d1/t", {"img": pxt.Image})
    with pytest.raises(pxt.SpecError, match="already exists"):
        pxt.create_table("d1/t", {"img": pxt.Image})
    again = pxt.create_table("d1/t", {"img": pxt.Image, "n": pxt.Int}, if_exists="ignore")
    assert list(again.spec.columns) == ["img"]
    replaced = pxt.create_table("d1/t", {"img": pxt.Image, "n": pxt.Int}, if_exists="replace")
    assert list(pxt.get_table("d1/t").spec.columns) == ["img", "n"] and replaced.path == "d1/t"
    with pytest.raises(pxt.SpecError, match="not empty"):
        pxt.drop_dir("d1")
    pxt.drop_dir("d1", force=True)
    assert pxt.list_tables() == []
    with pytest.raises(pxt.SpecError, match="does not exist"):
        pxt.get_table("d1/t")
    doc = json.loads(json.dumps(again._doc()))
    assert doc["path"] == "d1/t" and doc["columns"][0]["type"] == "Image"


def test_a_notebook_table_appears_in_dagster_dev_after_a_reload(tmp_path, monkeypatch):
    from pxt_assets_tests.test_cli_and_ui import ASSETS_QUERY, PxtEnv, graphql, start_dagster_dev, stop

    home, dagster_home = tmp_path / "pixeltable", tmp_path / "dagster_home"
    write_config(dagster_home)  # as ./dev does
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "PXT_", "DAGSTER_"))}
    env.update(PIXELTABLE_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    proc, port, _ = start_dagster_dev(PxtEnv(tmp_path, home, dagster_home, env))
    try:
        before = {tuple(n["assetKey"]["path"]) for n in graphql(port, ASSETS_QUERY)["assetNodes"]}
        assert not any(k[0] == "notebook" for k in before)
        # the notebook: same PIXELTABLE_HOME, another process
        monkeypatch.setenv("PIXELTABLE_HOME", str(home))
        monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
        pxt.create_dir("notebook")
        t = pxt.create_table("notebook/shots", {"img": pxt.Image})
        t.add_computed_column(small=t.img.thumbnail((16, 16)))
        reload = graphql(port, 'mutation { reloadRepositoryLocation(repositoryLocationName: "pxt_assets") '
                               "{ __typename } }")
        assert reload["reloadRepositoryLocation"]["__typename"] == "WorkspaceLocationEntry"
        nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(port, ASSETS_QUERY)["assetNodes"]}
        assert ("notebook", "shots", "img") in nodes and ("notebook", "shots", "small") in nodes
        assert nodes[("notebook", "shots", "small")]["dependencyKeys"] == [{"path": ["notebook", "shots", "img"]}]
        assert nodes[("notebook", "shots", "small")]["groupName"] == "notebook__shots"
    finally:
        stop(proc)
