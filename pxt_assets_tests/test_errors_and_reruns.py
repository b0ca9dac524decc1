"""Per-row errors do not sink a batch; re-running a batch rewrites the same files instead of adding more."""

from __future__ import annotations


import dagster as dg
import pytest

import pxt_assets as pxt
from pxt_assets.assets import batch_job_name
from pxt_assets_tests.conftest import files_under, make_image, stored_records



@pytest.fixture
def table(pxt_home, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("err/media", {"img": pxt.Image, "label": pxt.String})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.add_computed_column(width=t.img.width)
    return t


def test_bad_rows_are_counted_and_kept_with_their_errors(table, tmp_path, instance, images, http_server, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    rows = [
        {"img": str(images[0]), "label": "good"},
        {"img": str(corrupt), "label": "corrupt local"},
        {"img": str(tmp_path / "missing.jpg"), "label": "missing"},
        {"img": http_server.url("nope.jpg"), "label": "404"},
        {"img": http_server.url("corrupt.jpg"), "label": "corrupt url"},
        {"img": http_server.url("000000000090.jpg"), "label": "good url"},
    ]
    result = table.insert(rows, instance=instance)
    assert (result.num_rows, result.num_errors) == (6, 4)
    # Pixeltable's line: num_excs counts cells (a bad image fails the columns computed from it too)
    assert "Inserted 6 rows with 10 errors across 3 columns (media.img, media.rotated, media.width)" in \
        capsys.readouterr().out

    frame = table.collect().to_pandas()
    by_label = {r["label"]: r for r in frame.to_dict("records")}
    assert by_label["good"]["errors"] is None and by_label["good"]["width"] == 481
    assert by_label["good url"]["errors"] is None and by_label["good url"]["width"] == 640
    assert "not a readable image" in by_label["corrupt local"]["errors"]
    assert "file not found" in by_label["missing"]["errors"]
    assert "HTTP 404" in by_label["404"]["errors"]
    assert "cannot decode" in by_label["corrupt url"]["errors"]
    kinds = table.select(table.label, table.rotated.errortype).collect().to_pandas().set_index("label")["rotated_errortype"]
    assert kinds["404"] == "not_found" and kinds["corrupt url"] == "decode_error" and kinds["good"] is None

    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("6 rows inserted with 2 errors" in m for m in logs)  # the source step: missing + corrupt local
    assert any("rotated: added 6 column values with 4 errors" in m for m in logs)


def test_unknown_column_in_insert_fails_before_anything_is_written(table, pxt_home, instance, images):
    with pytest.raises(pxt.SpecError, match="unknown column"):
        table.insert([{"img": str(images[0]), "nope": 1}], instance=instance)
    assert table.batches() == []
    assert instance.get_dynamic_partitions("err__media__batches") == []


def test_wrong_scalar_type_is_a_row_error(table, instance, images):
    result = table.insert([{"img": str(images[0]), "label": 42}, {"img": str(images[1]), "label": "ok"}],
                          instance=instance)
    assert result.num_errors == 1
    frame = table.collect()
    assert "expected pxt.String" in frame["errors"][0] and frame["errors"][1] is None


def test_rerunning_a_batch_rewrites_the_samefiles_under(table, tmp_path, pxt_home, instance, images):
    result = table.insert([{"img": str(p), "label": p.name} for p in images], instance=instance)
    out = tmp_path / "out"
    first = {p: p.read_bytes() for p in files_under(out)}
    assert len(first) == 3
    before = table.select(table.rotated.fileurl).collect().to_pandas()

    job = table.definitions().resolve_job_def(batch_job_name(table.spec))
    assert job.execute_in_process(instance=instance, partition_key=result.batch).success
    assert {p: p.read_bytes() for p in files_under(out)} == first  # same names, same bytes, nothing added
    assert table.select(table.rotated.fileurl).collect().to_pandas().equals(before)
    assert table.count() == 3


def test_changed_output_replaces_the_old_file_instead_of_orphaning_it(pxt_home, tmp_path, instance):
    out = tmp_path / "out2"
    out.mkdir()
    src = make_image(tmp_path / "src.jpg", color=(10, 200, 10))
    t = pxt.MediaTable("err/replace", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    result = t.insert(img=str(src), instance=instance)
    (old,) = files_under(out)
    make_image(src, color=(10, 10, 200))  # the referenced source changes; re-run the batch
    job = t.definitions().resolve_job_def(batch_job_name(t.spec))
    assert job.execute_in_process(instance=instance, partition_key=result.batch).success
    (new,) = files_under(out)
    assert new != old and not old.exists()


def test_two_tables_writing_to_one_destination_never_collide(pxt_home, tmp_path, instance, images):
    shared = tmp_path / "shared"
    shared.mkdir()
    tables = []
    for name in ("a/media", "b/media"):
        t = pxt.MediaTable(name, {"img": pxt.Image})
        t.add_computed_column(rotated=t.img.rotate(90), destination=str(shared))
        t.add_computed_column(rotated2=t.img.rotate(90), destination=str(shared))
        t.insert(img=str(images[0]), instance=instance)
        tables.append(t)
    assert len(files_under(shared)) == 4  # same content, four columns: four files


def test_materialization_metadata_shows_counts_destination_fileurls_and_preview(table, tmp_path, instance, images):
    table.insert([{"img": str(images[0]), "label": "x"}, {"img": str(tmp_path / "missing.jpg"), "label": "y"}],
                 instance=instance)
    event = instance.get_latest_materialization_event(dg.AssetKey(["err", "media", "rotated"]))
    md = event.asset_materialization.metadata
    assert md["rows"].value == 2 and md["errors"].value == 1
    assert md["destination"].value == (tmp_path / "out").as_uri()
    assert md["sample_fileurls"].value[0].startswith((tmp_path / "out").as_uri())
    assert md["preview"].value.startswith("![preview](data:image/png;base64,")
    width_md = instance.get_latest_materialization_event(dg.AssetKey(["err", "media", "width"])).asset_materialization.metadata
    assert width_md["rows"].value == 2 and "preview" not in width_md


def _rerun(t, batch, instance):
    job = t.definitions().resolve_job_def(batch_job_name(t.spec))
    run = job.execute_in_process(instance=instance, partition_key=batch)
    assert run.success
    return [e.user_message for e in instance.all_logs(run.run_id)]


def test_rerun_recomputes_only_failed_rows_and_says_how_many_it_skipped(pxt_home, tmp_path, instance, images):
    out = tmp_path / "out3"
    out.mkdir()
    late = tmp_path / "late.jpg"
    t = pxt.MediaTable("rerun/failed", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.add_computed_column(width=t.img.width)
    result = t.insert([{"img": str(p)} for p in images] + [{"img": str(late)}], instance=instance)
    assert result.num_errors == 1
    before = {p: p.stat().st_mtime_ns for p in files_under(out)}
    assert len(before) == 3

    make_image(late, size=(30, 20))  # the missing file appears; re-materialize the batch
    logs = _rerun(t, result.batch, instance)
    assert any("rotated: added 1 column values with 0 errors; skipped 3 unchanged rows" in m for m in logs)
    assert any("width: added 1 column values with 0 errors; skipped 3 unchanged rows" in m for m in logs)
    after = {p: p.stat().st_mtime_ns for p in files_under(out)}
    assert len(after) == 4 and all(after[p] == m for p, m in before.items())  # untouched
    assert list(t.select(t.width).collect()["width"]) == [481, 640, 640, 30]
    assert all(e is None for e in t.collect()["errors"])


def test_rerun_recomputes_rows_whose_inputs_changed(pxt_home, tmp_path, instance):
    srcs = [make_image(tmp_path / f"s{i}.jpg", size=(40 + i, 30)) for i in range(3)]
    t = pxt.MediaTable("rerun/changed", {"img": pxt.Image})
    t.add_computed_column(width=t.img.width)
    result = t.insert([{"img": str(p)} for p in srcs], instance=instance)
    logs = _rerun(t, result.batch, instance)
    assert any("width: added 0 column values with 0 errors; skipped 3 unchanged rows" in m for m in logs)
    make_image(srcs[1], size=(99, 30))
    logs = _rerun(t, result.batch, instance)
    assert any("width: added 1 column values with 0 errors; skipped 2 unchanged rows" in m for m in logs)
    assert list(t.select(t.width).collect()["width"]) == [40, 99, 42]


def test_integer_columns_stay_integers_when_a_row_fails(table, pxt_home, tmp_path, instance, images):
    result = table.insert([{"img": str(images[0]), "label": "a"}, {"img": str(tmp_path / "gone.jpg"), "label": "b"}],
                          instance=instance)
    values = [r["value"] for r in stored_records(table, "width", result.batch)]
    assert values == [481, None] and type(values[0]) is int
    frame = table.select(table.width).collect().to_pandas()
    assert str(frame["width"].dtype) == "Int64" and frame["width"][0] == 481 and frame["width"].isna()[1]
