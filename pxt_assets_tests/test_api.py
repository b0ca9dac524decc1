"""The public API: table paths, expressions as data, image functions, select().collect(), the asset graph."""

from __future__ import annotations

import json
import pathlib

import dagster as dg
import PIL.Image
import pytest

import pxt_assets as pxt
from pxt_assets.spec import TableSpec


@pytest.fixture
def table(pxt_home, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("api.media", {"source_image": pxt.Image})
    t.add_computed_column(rotated=t.source_image.rotate(90), destination=str(out))
    t.add_computed_column(flipped=t.source_image.transpose(0))
    t.add_computed_column(thumbnail=t.source_image.thumbnail((128, 128)), destination=str(out))
    t.add_computed_column(gray=t.source_image.convert("L"))
    t.add_computed_column(cropped=t.source_image.crop((0, 0, 100, 50)))
    t.add_computed_column(small=t.source_image.resize((40, 30)))
    t.add_computed_column(width=t.source_image.width)
    t.add_computed_column(height=t.source_image.height)
    t.add_computed_column(mode=t.gray.mode)
    t.add_computed_column(rot_width=t.rotated.width)
    return t


def test_table_path_accepts_slash_and_dot_forms(pxt_home):
    a = pxt.MediaTable("blob_storage_demo/media", {"img": pxt.Image})
    b = pxt.MediaTable("blob_storage_demo.media", {"img": pxt.Image})
    assert a.spec.path == b.spec.path == ("blob_storage_demo", "media")
    with pytest.raises(pxt.SpecError):
        pxt.MediaTable("bad path!", {"img": pxt.Image})


@pytest.mark.parametrize("name,why", [("", "letters, digits"), ("c\n", "control character"),
                                      ("a\tb", "control character"), ("a b", "letters, digits"),
                                      ("_x", "not starting with '_'"), ("row_id", "field of every row"),
                                      ("x" * 1001, "longer than the 1000")])
def test_a_name_that_cannot_be_a_column_is_refused_at_definition_naming_table_and_name(pxt_home, name, why):
    with pytest.raises(pxt.SpecError, match=r"table 'names/t': invalid column name ") as e:
        pxt.MediaTable("names/t", {"img": pxt.Image, name: pxt.Int})
    assert repr(name[:60]) in str(e.value) and why in str(e.value)
    t = pxt.MediaTable("names/t", {"img": pxt.Image})
    with pytest.raises(pxt.SpecError, match=why):
        t.add_column(**{name: pxt.Int})


def test_table_path_with_a_control_character_is_refused(pxt_home):
    with pytest.raises(pxt.SpecError, match="invalid table path"):
        pxt.MediaTable("dir/a\nb", {"img": pxt.Image})


@pytest.mark.parametrize("path", ["a__b", "dir/a__b", "a_/b", "a/_b", "_a"])
def test_table_paths_whose_dagster_names_could_collide_are_refused(pxt_home, path):
    # 'a__b' and 'a/b' (or 'a_/b' and 'a/_b') would be one set of assets, jobs and files in Dagster
    with pytest.raises(pxt.SpecError, match=r"may not contain '__' or start or end with '_'"):
        pxt.MediaTable(path, {"img": pxt.Image})


def test_expressions_are_serialisable_data(table):
    doc = json.loads(json.dumps(table.spec.to_dict()))
    again = TableSpec.from_dict(doc)
    assert again.to_dict() == table.spec.to_dict()
    assert doc["columns"][1]["expr"] == {"fn": "image.rotate", "args": [{"col": "source_image"}, {"lit": 90}]}
    assert repr(again.columns["thumbnail"].expr) == "source_image.thumbnail((128, 128))"
    assert again.columns["rot_width"].expr.columns() == {"rotated"}


def test_image_functions_compute_what_pillow_does(table, instance, images):
    table.insert(source_image=str(images[0]), instance=instance)  # 481 x 640
    row = table.select(table.rotated, table.flipped, table.thumbnail, table.gray, table.cropped, table.small,
                       table.width, table.height, table.mode, table.rot_width).collect().to_pandas().iloc[0]
    src = PIL.Image.open(images[0])
    assert row["rotated"].size == (640, 481) and row["rot_width"] == 640
    assert row["flipped"].size == (481, 640)
    assert max(row["thumbnail"].size) == 128 and row["thumbnail"].size == (96, 128)
    assert row["gray"].mode == "L" and row["mode"] == "L"
    assert row["cropped"].size == (100, 50) and row["small"].size == (40, 30)
    assert (row["width"], row["height"]) == src.size
    # transpose(0) is a left-right mirror: the flipped image's left column is the source's right column
    expected = src.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT).convert("RGB").resize((8, 8))
    got = row["flipped"].convert("RGB").resize((8, 8))
    diff = sum(abs(a - b) for pa, pb in zip(expected.getdata(), got.getdata()) for a, b in zip(pa, pb))
    assert diff / (8 * 8 * 3) < 12  # JPEG re-encoding noise only


def test_query_time_expressions_and_names(table, instance, images):
    table.insert([{"source_image": str(p)} for p in images], instance=instance)
    frame = table.select(table.source_image.rotate(180).width, w=table.width, url=table.rotated.fileurl,
                         path=table.rotated.localpath).collect()
    assert list(frame.columns) == ["width", "w", "url", "path"]  # a call is named by its function, as Pixeltable
    assert list(frame["width"]) == [481, 640, 640]
    assert all(pathlib.Path(p).is_file() for p in frame["path"])
    assert frame.schema["w"] == "Int" and str(frame.to_pandas()["w"].dtype) == "Int64"


def test_bad_expressions_fail_with_clear_messages(table, pxt_home):
    with pytest.raises(AttributeError, match="no attribute or function 'sharpen'"):
        table.source_image.sharpen(2)
    with pytest.raises(AttributeError, match="not a media expression"):
        table.width.fileurl  # noqa: B018
    with pytest.raises(AttributeError, match="Unknown column 'nope'"):
        table.nope  # noqa: B018
    with pytest.raises(pxt.SpecError, match="already has a column 'rotated'"):
        table.add_computed_column(rotated=table.source_image.rotate(10))
    table.add_computed_column(rotated=table.source_image.rotate(10), if_exists="ignore")
    assert repr(table.spec.columns["rotated"].expr) == "source_image.rotate(90)"
    other = pxt.MediaTable("api.other", {"img": pxt.Image})
    with pytest.raises(pxt.SpecError, match="unknown column"):
        table.add_computed_column(x=other.img.rotate(1))


def test_definitions_have_one_asset_per_column_with_lineage(table):
    defs = pxt.definitions(table)
    graph = defs.resolve_asset_graph()
    key = lambda c: dg.AssetKey(["api", "media", c])  # noqa: E731
    assert {k for k in graph.get_all_asset_keys()} == {key(c) for c in table.spec.columns}
    assert graph.get(key("rotated")).parent_keys == {key("source_image")}
    assert graph.get(key("mode")).parent_keys == {key("gray")}
    assert graph.get(key("rot_width")).parent_keys == {key("rotated")}
    assert graph.get(key("source_image")).parent_keys == set()
    assert {graph.get(key(c)).group_name for c in table.spec.columns} == {"api__media"}
    assert defs.resolve_job_def("api__media_job") and defs.resolve_job_def("api__media__batch_job")


def test_one_column_can_be_backfilled_alone(table, instance, images):
    result = table.insert(source_image=str(images[1]), instance=instance)
    job = table.definitions().resolve_job_def("api__media__batch_job")
    sub = job.get_subset(asset_selection={dg.AssetKey(["api", "media", "rot_width"])})
    run = sub.execute_in_process(instance=instance, partition_key=result.batch)
    assert run.success
    materialized = {e.asset_key.path[-1] for e in run.get_asset_materialization_events()}
    assert materialized == {"rot_width"}  # read `rotated` from storage, recomputed nothing else
