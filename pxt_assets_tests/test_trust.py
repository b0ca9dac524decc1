"""Tables you can trust (issue #25): each observation of the issue, as a user meets it."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import subprocess
import sys
import threading

import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets import check, rowstore
from pxt_assets.assets import batch_job_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(code: str, timeout: float = 180, **extra_env: str) -> subprocess.CompletedProcess:
    """Another process (a second notebook) on the same home and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["DAGSTER_HOME"] = os.path.join(os.environ["PIXELTABLE_HOME"], "child_dagster")
    env.update(extra_env)
    return subprocess.run([sys.executable, "-c", "import pxt_assets as pxt\n" + code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# -- 1. a partial run never commits a failed batch -----------------------------------------------------------

def test_a_partial_run_does_not_commit_a_batch_whose_other_columns_failed(pxt_home, tmp_path, instance, images):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("trust/partial", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.add_computed_column(w=t.img.width)
    out.rmdir()  # the destination vanishes: the computed step fails
    with pytest.raises(RuntimeError, match="resume"):
        t.insert([{"img": str(p)} for p in images], instance=instance)
    (batch,) = t.pending_batches()
    # one column's asset for that batch, as from the UI or an automation run
    job = t.definitions().resolve_job_def(batch_job_name(t.spec))
    only_w = job.get_subset(asset_selection={dg.AssetKey(["trust", "partial", "w"])})
    only_w.execute_in_process(instance=instance, partition_key=batch, raise_on_error=False)
    assert t.pending_batches() == [batch] and t.count() == 0  # still not visible: `rotated` is missing
    info = t.batch_info(batch)
    assert info.status == "failed" and "rotated" in info.reason
    out.mkdir()
    (result,) = t.resume(instance=instance)
    assert result.num_rows == 3 and t.count() == 3
    assert t.where(t.rotated.errortype == None).count() == 3  # noqa: E711


def test_a_column_whose_backfill_was_killed_is_reported_and_resume_computes_it(pxt_home, instance, images):
    pxt.create_dir("trust")
    t = pxt.create_table("trust/later", {"img": pxt.Image})
    (batch,) = [t.insert([{"img": str(p)} for p in images], instance=instance).batch]
    killed = _child("t = pxt.get_table('trust/later'); t.add_computed_column(w=t.img.width)",
                    PXT_FAULT_POINT="mid_commit:1")  # inside the backfill's commit transaction
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert t.columns() == ["img", "w"] and t.uncomputed() == {batch: ["w"]}
    assert t.where(t.w != None).count() == 0  # noqa: E711 - nothing of it is visible
    problems = {p.kind: p.message for p in check.check_table(t, files=False).problems}
    assert "resume()" in problems.pop(check.NOT_COMPUTED)
    assert set(problems) <= {check.STAGED_OF_COMMITTED}  # what the killed run staged, if it got that far
    (result,) = t.resume(instance=instance)
    assert result.batch == batch and t.uncomputed() == {}
    assert sorted(t.select(t.w).collect()["w"]) == sorted(pxt.get_table("trust/later").select(
        t.img.width).collect().to_pandas().iloc[:, 0])
    assert check.check_table(t, files=False).ok


# -- 2, 3. a versioned catalog --------------------------------------------------------------------------------

def test_two_handles_adding_columns_keep_both(pxt_home, instance):
    pxt.create_dir("trust")
    t = pxt.create_table("trust/two", {"img": pxt.Image})
    assert t.count() == 0  # this process has used the table
    other = _child("t = pxt.get_table('trust/two'); t.add_computed_column(h=t.img.height)")
    assert other.returncode == 0, other.stderr[-2000:]
    t.add_computed_column(w=t.img.width)  # from the handle loaded before the other process's change
    again = _child("t = pxt.get_table('trust/two'); print(sorted(t.columns()))")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split("\n")[-2] == str(sorted(["img", "h", "w"]))


def test_a_table_recreated_by_another_process_is_seen_at_the_next_call(pxt_home, instance, images):
    pxt.create_dir("trust")
    t = pxt.create_table("trust/again", {"img": pxt.Image})
    t.insert([{"img": str(images[0])}], instance=instance)
    other = _child("pxt.create_table('trust/again', {'img': pxt.Image}, if_exists='replace')")
    assert other.returncode == 0, other.stderr[-2000:]
    fresh = pxt.get_table("trust/again")
    fresh.insert([{"img": str(images[1])}], instance=instance)
    assert fresh.count() == 1


# -- 4. races answer, not raise -----------------------------------------------------------------------------

def test_two_processes_creating_one_batch_get_one_yes_and_one_already_exists(db, pxt_home):
    store = rowstore.RowStore(db)
    slug = f"race{next(_names)}"
    answers: list[bool] = []
    errors: list[BaseException] = []
    for i in range(100):
        barrier = threading.Barrier(2)

        def create(i=i, barrier=barrier):
            barrier.wait()
            return store.create_batch(slug, f"b{i}", [{"x": i}])

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(create) for _ in range(2)]
            for f in futures:
                try:
                    answers.append(f.result())
                except Exception as e:  # noqa: BLE001 - counted: the test's point
                    errors.append(e)
    assert not errors, f"{len(errors)} of 100 races raised: {errors[0]!r}"
    assert answers.count(True) == 100 and answers.count(False) == 100


# -- 6. one bad value is one bad row -------------------------------------------------------------------------

def _deep(levels: int) -> list:
    top: list = []
    cur = top
    for _ in range(levels):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    return top


_names = itertools.count()  # one PostgreSQL database serves the module: a table of each test's own

BAD_VALUES = [
    pytest.param("n", 2**64, id="int-over-64-bits"),
    pytest.param("n", True, id="bool-in-int"),
    pytest.param("s", "a\x00b", id="nul-in-string"),
    pytest.param("j", {"x": float("nan")}, id="nan-in-json"),
    pytest.param("j", {"x": "a\x00b"}, id="nul-in-json"),
    pytest.param("j", _deep(5000), id="json-5000-deep"),
]


@pytest.mark.parametrize("column,bad", BAD_VALUES)
def test_one_bad_value_is_one_bad_row_and_the_rest_commit(db, instance, column, bad):
    t = pxt.MediaTable(f"trust/bad{next(_names)}", {"n": pxt.Int, "s": pxt.String, "j": pxt.Json})
    rows = [{"n": i, "s": f"row {i}", "j": {"i": i}} for i in range(20)]
    rows[7][column] = bad
    t.insert(rows, instance=instance)
    assert t.count() == 20 and t.pending_batches() == []
    got = t.select(t.n, t.s, getattr(t, column).errortype, getattr(t, column).errormsg).collect()
    kinds = list(got[f"{column}_errortype"])
    assert kinds.count("invalid_value") == 1 and kinds[7] == "invalid_value"
    assert column in got[f"{column}_errormsg"][7]
    assert [s for i, s in enumerate(got["s"]) if i != 7 or column != "s"] == \
        [f"row {i}" for i in range(20) if i != 7 or column != "s"]
    assert t.resume(instance=instance) == []


# -- 8. any valid name fits ------------------------------------------------------------------------------

def test_names_differing_in_case_or_long_names_fit_on_either_database(db, instance, tmp_path):
    long_a, long_b = "x" * 61 + "_a", "x" * 61 + "_b"
    t = pxt.MediaTable(f"trust/names{next(_names)}", {"img": pxt.Int, "IMG": pxt.Int, long_a: pxt.Int, long_b: pxt.Int,
                                       "y" * 300: pxt.Int})
    t.insert([{"img": 1, "IMG": 2, long_a: 3, long_b: 4, "y" * 300: 5}], instance=instance)
    row = t.collect().to_pandas().to_dict("records")[0]
    assert (row["img"], row["IMG"], row[long_a], row[long_b], row["y" * 300]) == (1, 2, 3, 4, 5)
    t.drop_column(long_a)
    assert long_a not in t.columns() and t.collect().to_pandas().to_dict("records")[0][long_b] == 4


def test_a_name_with_a_control_character_is_refused_at_definition(pxt_home):
    with pytest.raises(Exception, match="c\\\\n|control"):
        pxt.MediaTable("trust/ctl", {"c\n": pxt.Int})


# -- 9. views of tables declared in code ----------------------------------------------------------------------

def test_deleting_a_batch_of_a_code_declared_table_deletes_its_views_rows(pxt_home, instance, tmp_path):
    from pxt_assets.functions.document import document_splitter

    doc = tmp_path / "a.md"
    doc.write_text("# A\n\nOne.\n\n## B\n\nTwo.\n")
    t = pxt.MediaTable("trust/docs", {"doc": pxt.Document})
    v = pxt.create_view("trust/chunks", t, iterator=document_splitter(t.doc, "heading"))
    result = t.insert([{"doc": str(doc)}], instance=instance)
    assert v.count() == 2
    t.delete(batch=result.batch, instance=instance)
    assert t.count() == 0 and v.count() == 0


FRAMES_YAML = """
type: pxt_assets.MediaTableComponent
attributes:
  path: trust/clips
  schema: {video: Video}
  views:
    - path: trust/clip_frames
      iterator: {function: video.frame_iterator, args: [{column: video}], kwargs: {fps: 2}}
      destination: "{{ env('TRUST_FRAMES_DEST') }}"
"""


def _files(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_yaml_tables_views_rows_go_with_a_deleted_batch_even_from_a_process_that_never_declared_them(
        pxt_home, instance, tmp_path, monkeypatch):
    import yaml

    from pxt_assets_tests.mediagen import make_video

    dest = tmp_path / "frames"
    dest.mkdir()
    monkeypatch.setenv("TRUST_FRAMES_DEST", str(dest))
    declared = yaml.safe_load(FRAMES_YAML)
    component = pxt.MediaTableComponent.from_attributes_dict(attributes=declared["attributes"])
    table, view = component.build_tables()
    first = table.insert([{"video": str(make_video(tmp_path / "a.mp4", seconds=2.0))}], instance=instance)
    second = table.insert([{"video": str(make_video(tmp_path / "b.mp4", seconds=1.0))}], instance=instance)
    assert view.count() == 6 and len(_files(dest)) == 6  # each insert made its view's rows (4 + 2 frames)

    # in this process: the YAML table's object knows its view
    assert table.delete(batch=second.batch, instance=instance) == 2
    assert view.count() == 4 and len(_files(dest)) == 4
    # another process declaring only the base table (a worker, a notebook): the database knows the view
    done = _child(f"t = pxt.MediaTable('trust/clips', {{'video': pxt.Video}})\n"
                  f"print(t.delete(batch={first.batch!r}))")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "4"
    assert table.count() == 0 and view.count() == 0 and _files(dest) == []


def test_dropping_a_code_declared_table_drops_its_views_rows_with_force(pxt_home, instance, tmp_path):
    from pxt_assets.functions.video import frame_iterator
    from pxt_assets_tests.mediagen import make_video

    dest = tmp_path / "frames"
    dest.mkdir()
    t = pxt.MediaTable("trust/videos", {"video": pxt.Video})
    v = pxt.create_view("trust/frames", t, iterator=frame_iterator(t.video, fps=2), destination=str(dest))
    t.insert([{"video": str(make_video(tmp_path / "a.mp4", seconds=2.0))}], instance=instance)
    assert v.count() == 4 and len(_files(dest)) == 4
    with pytest.raises(pxt.SpecError, match=r"has views \['trust/frames'\]"):
        pxt.drop_table("trust/videos", instance=instance)
    assert pxt.drop_table("trust/videos", force=True, instance=instance) == 4
    store = rowstore.for_settings(pxt.load_settings())
    assert _files(dest) == [] and store.row_table(v.spec.slug) is None and store.views("trust/videos") == []
