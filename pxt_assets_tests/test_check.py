"""The invariants as a user tool (pxt_assets/check.py): `python -m pxt_assets check [TABLE]` and each table's
Dagster asset check. A healthy table passes; each kind of drift, made behind the table's back, is found by
both, local files and bucket objects alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import dagster as dg
import pytest
import sqlalchemy as sa

import pxt_assets as pxt
from pxt_assets import check, rowstore, stores
from pxt_assets.__main__ import main as cli_main
from pxt_assets.assets import asset_key
from pxt_assets.functions.document import document_splitter
from pxt_assets_tests.emulators import REPO
from pxt_assets_tests.places import SERVER_FIXTURE, Place

MODULE = "pxt_check_test_tables"


@pytest.fixture
def declared(monkeypatch):
    """Tables for the CLI's `-m` module: `declared(t, v)` makes them that module's."""
    def declare(*tables):
        module = types.ModuleType(MODULE)
        module.tables = list(tables)
        monkeypatch.setitem(sys.modules, MODULE, module)
    return declare


def cli(capsys, *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()  # what came before
    code = cli_main(["-m", MODULE, "check", *args])
    return code, capsys.readouterr().out.strip().splitlines()


def evaluate(table, *others) -> dg.AssetCheckEvaluation:
    """Run the table's asset check as the UI would: the check alone, in a run of its own."""
    defs = pxt.definitions(table, *others)
    key = dg.AssetCheckKey(asset_key(table.spec, table.spec.source_columns()[0].name), check.CHECK_NAME)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_check_selection={key}, asset_selection=set())
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success  # a check that does not pass does not fail its run (it only warns)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.asset_check_key == key and evaluation.severity == dg.AssetCheckSeverity.WARN
    return evaluation


def _store(table) -> rowstore.RowStore:
    return rowstore.for_settings(table.settings)


@pytest.fixture(params=["local", "s3"])
def where(request, pxt_home, tmp_path):
    if request.param == "local":
        return Place("local", root=tmp_path / "bucket")
    return Place(request.param, request.getfixturevalue(SERVER_FIXTURE[request.param]))


def _tables(where, tmp_path, images, instance):
    """A table writing to `where` (a computed image) and referencing its inputs, and a view of it."""
    if where.name == "local":
        (where.root / "rot").mkdir()
    doc = tmp_path / "a.md"
    doc.write_text("# A\n\nOne.\n\n## B\n\nTwo.\n")
    t = pxt.MediaTable("chk/media", {"img": pxt.Image, "doc": pxt.Document})
    t.add_computed_column(rot=t.img.rotate(90), destination=where.prefix + "rot/")
    t.add_computed_column(width=t.img.width)
    v = pxt.create_view("chk/chunks", t, iterator=document_splitter(t.doc, "heading"))
    first = t.insert([{"img": str(images[0]), "doc": str(doc)}], instance=instance)
    second = t.insert([{"img": str(images[1])}], instance=instance)
    assert t.count() == 2 and v.count() == 2
    return t, v, first.batch, second.batch


def test_a_healthy_table_and_its_view_pass(where, tmp_path, images, instance, declared, capsys):
    t, v, _, _ = _tables(where, tmp_path, images, instance)
    declared(t, v)
    code, out = cli(capsys)
    # 2 rotated images, 2 inputs and the document (each file once per table); the view's rows name their
    # base row's image, rotated image and document too (the base table's columns, as Pixeltable's views have)
    assert code == 0 and out == ["ok: 2 tables, 8 files checked, no problems"]
    code, out = cli(capsys, "chk/chunks", "--json")
    report = json.loads(out[-1])
    assert code == 0 and report["ok"] and report["tables"] == ["chk/chunks"] and report["problems"] == []
    for table in (t, v):
        evaluation = evaluate(table, *[x for x in (t, v) if x is not table])
        assert evaluation.passed and evaluation.metadata["problem_count"].value == 0
    # a batch's run does not run the check (it reads every file): only the UI or a schedule does
    run_id = t.insert([{"img": str(images[2])}], instance=instance).run_id
    assert not instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)


def test_each_kind_of_drift_is_found_by_the_cli_and_the_asset_check(where, tmp_path, images, instance, declared,
                                                                   capsys):
    t, v, batch, second = _tables(where, tmp_path, images, instance)
    store = _store(t)
    # a file we wrote is deleted, and a file a row references (both of the second batch's row)
    rotated = t.select(t.rot.fileurl).collect().to_pandas().iloc[1, 0]
    stores.store_for(rotated).delete(rotated)
    os.remove(images[1])
    # a stray SQL column, and a column the definition has but the SQL table lacks (added in code, never run)
    rt = store.row_table(t.spec.slug)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{rt.sql_name}" ADD COLUMN zz_stray TEXT'))
    t.add_computed_column(height=t.img.height)
    # a pending batch no run is writing, that records no reason
    store.create_batch(t.spec.slug, "20260101T000000000000-abcd", [{"img": str(images[0])}])
    # records staged for a committed batch by a run that is gone
    store.stage_column(rt, second, "width", [{"row_id": f"{second}-000000", "value": 1}], run_id="gone")
    # view rows whose base batch went without them (what deleting a batch did before views were found)
    store.delete_batch(rt, t.spec.slug, batch)
    declared(t, v)

    code, out = cli(capsys)
    assert code == 1
    problems, summary = out[:-1], out[-1]
    pending = not getattr(store.batch_info(t.spec.slug, "20260101T000000000000-abcd"), "reason", None)
    kinds = {"missing_file": 2, "schema": 2, "staged_of_committed": 1, "orphaned_view_batch": 1,
             "pending_without_reason": 1 if pending else 0}
    assert sorted(p.split(": ")[1] for p in problems) == sorted(k for k, n in kinds.items() for _ in range(n))
    # the missing files: ours and the user's
    assert any(p.startswith(f"chk/media: missing_file: a file we wrote is missing: {rotated} (column 'rot', "
                            f"batch {second}, row {second}-000000)") for p in problems)
    assert any(p.startswith("chk/media: missing_file: a referenced file is missing: "
                            f"{stores.normalize_uri(str(images[1]))} (column 'img'") for p in problems)
    assert any("SQL column zz_stray of" in p for p in problems)
    assert any("column 'height' has no SQL columns" in p for p in problems)
    assert any(f"chk/chunks: orphaned_view_batch: batch {batch} has no batch" in p for p in problems)
    assert summary.startswith(f"{len(problems)} problems (") and "2 tables" in summary

    code, out = cli(capsys, "chk/media", "--json")
    report = json.loads(out[-1])
    assert code == 1 and not report["ok"] and report["tables"] == ["chk/media"]
    assert report["counts"]["schema"] == 2 and report["counts"]["missing_file"] == 2

    evaluation = evaluate(t, v)
    assert not evaluation.passed
    assert evaluation.metadata["problem_count"].value == len([p for p in problems if p.startswith("chk/media:")])
    assert "zz_stray" in evaluation.metadata["problems"].value
    assert not evaluate(v, t).passed


def test_a_missing_object_is_one_line_naming_its_row(where, tmp_path, images, instance, declared,
                                                                    capsys):
    t, v, _, _ = _tables(where, tmp_path, images, instance)
    declared(t, v)
    rows = t.select(t.rot.fileurl).collect().to_pandas()
    gone = rows.iloc[1, 0]
    stores.store_for(gone).delete(gone)
    code, out = cli(capsys, "chk/media")
    assert code == 1 and len(out) == 2
    assert out[0].startswith(f"chk/media: missing_file: a file we wrote is missing: {gone} (column 'rot', batch ")
    assert out[1] == "1 problem (1 missing_file): 1 table, 5 files checked"


def test_a_batch_being_written_and_staged_records_of_a_live_run_are_not_drift(pxt_home, instance, images):
    t = pxt.MediaTable("chk/live", {"img": pxt.Image})
    t.add_computed_column(width=t.img.width)
    batch = t.insert([{"img": str(images[0])}], instance=instance).batch
    store = _store(t)
    pending = "20260101T000000000000-beef"
    store.create_batch(t.spec.slug, pending, [{"img": str(images[0])}])
    store.start_run(t.spec.slug, pending, "live-run")  # this process: alive
    store.start_run(t.spec.slug, batch, "backfill")  # a backfill of a committed batch, staging now
    store.stage_column(store.row_table(t.spec.slug), batch, "width", [{"row_id": f"{batch}-000000", "value": 1}],
                       run_id="backfill")
    assert check.check_table(t).ok


class _Info:
    def __init__(self, status: str, **extra) -> None:
        self.batch, self.status = "b", status
        self.__dict__.update(extra)


class _Batches:
    """A stand-in for the row store's batch methods: what pending_without_reason reads."""

    def __init__(self, infos: dict[str, _Info], running: set[str] = frozenset()) -> None:
        self.infos, self.running = infos, set(running)

    def batches(self, slug, status=None):
        return [b for b, i in self.infos.items() if status is None or i.status == status]

    def running_batches(self, slug):
        return self.running

    def batch_info(self, slug, batch):
        return self.infos.get(batch)


def test_a_pending_batch_needs_a_reason_once_batches_record_one():
    target = check.Target("x__t", "x/t")
    infos = {"a": _Info("committed"), "b": _Info("pending"), "c": _Info("pending", reason="failed: disk full"),
             "d": _Info("failed", reason=""), "e": _Info("pending")}
    found = check.pending_without_reason(_Batches(infos, running={"e"}), target)
    assert [p.message.split()[1] for p in found] == ["b", "d"]  # c says why; e is being written now


def test_the_cli_in_a_process_of_its_own_exits_1_with_one_line_per_problem(pxt_home, instance, images):
    t = pxt.MediaTable("chk/proc", {"img": pxt.Image})
    t.add_computed_column(width=t.img.width)
    t.insert([{"img": str(images[0])}], instance=instance)
    os.remove(images[0])
    env = dict(os.environ)
    module = pxt_home / "check_mod.py"
    module.write_text("tables = []\n")  # nothing declared: the database's tables, as it recorded them
    env["PYTHONPATH"] = str(pxt_home) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "pxt_assets", "-m", "check_mod", "check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 2 and lines[0].startswith("chk/proc: missing_file: a referenced file is missing: ")
    assert lines[1] == "1 problem (1 missing_file): 1 table, 1 file checked"
