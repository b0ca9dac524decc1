"""Pixeltable's API where issue #27 asked for it (types and nullability, UpdateStatus, on_error, exceptions,
drop_table / if_exists): what ours adds around it, and what the ported tests (pixeltable/) do not show."""

from __future__ import annotations

import pickle
from typing import Optional

import pytest

import pxt_assets as pxt
from pxt_assets import stores
from pxt_assets.config import ConfigError, load_settings
from pxt_assets.spec import SpecError
from pxt_assets.stores import path_of
from pxt_assets_tests.conftest import files_under, make_image
from pxt_assets_tests.mediagen import make_video
from pxt_assets_tests.pixeltable.test_table import p  # noqa: F401 - a fixture


@pytest.fixture
def catalog(p, pxt_home):  # noqa: F811 - p: a fresh catalog with its directory test_dir
    return pxt_home


@pytest.fixture
def bad_image(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"not an image")
    return path


def test_type_forms_and_nullability_survive_the_catalog(catalog):
    t = pxt.create_table("test_dir/t", {"a": pxt.Int | None, "b": Optional[pxt.Int], "c": pxt.Required[pxt.Int],
                                 "d": pxt.Int, "e": None | pxt.String})
    assert [t.spec.columns[c].col_type.nullable for c in "abcde"] == [True, True, False, True, True]
    again = pxt.get_table("test_dir/t")  # as another process reads it
    assert [again.spec.columns[c].col_type.nullable for c in "abcde"] == [True, True, False, True, True]
    assert repr(again.spec.columns["c"].col_type) == "pxt.Required[pxt.Int]"
    from pxt_assets.media import type_named  # a YAML schema's strings

    assert [type_named(n).nullable for n in ("Int", "pxt.Int | None", "None | Int", "Required[Int]",
                                             "pxt.Required[pxt.Int]")] == [True, True, True, False, False]
    with pytest.raises(pxt.RequestError, match="Column 'x': expected a type") as e:
        pxt.create_table("test_dir/u", {"x": "Int"})
    assert e.value.error_code is pxt.ErrorCode.INVALID_TYPE
    with pytest.raises(pxt.Error, match="Missing value for non-nullable column 'c'"):
        again.insert(a=1)


def test_update_status_keeps_insert_results_names(catalog, images, capsys):
    t = pxt.create_table("test_dir/t", {"img": pxt.Image})
    status = t.insert([{"img": str(f)} for f in images[:2]])
    assert isinstance(status, pxt.UpdateStatus) and pxt.InsertResult is pxt.UpdateStatus
    assert (status.num_rows, status.num_excs, status.num_computed_values, status.updated_cols) == (2, 0, 0, [])
    assert status.batch in t.batches() and status.run_id and status.num_errors == 0 and status.seconds > 0
    assert "Inserted 2 rows with 0 errors in" in capsys.readouterr().out
    added = t.add_computed_column(rot=t.img.rotate(90))
    assert (added.num_rows, added.num_excs, added.batches) == (2, 0, (status.batch,))

    class Printer:  # what IPython's pretty printer calls
        def __init__(self):
            self.out = ""

        def text(self, s):
            self.out += s

    shown = Printer()
    status._repr_pretty_(shown, False)
    assert shown.out == "2 rows inserted."
    shown = Printer()
    added._repr_pretty_(shown, False)
    assert shown.out == "2 rows updated."


def test_abort_rolls_the_batch_back_and_names_column_and_input(catalog, images, bad_image):
    t = pxt.create_table("test_dir/t", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90))
    media = catalog / "media"
    with pytest.raises(pxt.RequestError) as e:
        t.insert([{"img": str(images[0])}, {"img": str(bad_image)}])  # Pixeltable's default: abort
    assert "column 'img' failed for row 1" in str(e.value) and str(bad_image) in str(e.value)
    # nothing of the batch is left: no rows, no batch to resume, no file the good row's column wrote
    assert t.count() == 0 and t.batches() == [] and files_under(media) == []
    status = t.insert([{"img": str(images[0])}, {"img": str(bad_image)}], on_error="ignore")
    assert (status.num_rows, status.num_errors, status.num_excs) == (2, 1, 2)
    assert sorted(status.cols_with_excs) == ["t.img", "t.rot"]


def test_on_error_deployment_default(catalog, images, bad_image, monkeypatch):
    t = pxt.create_table("test_dir/t", {"img": pxt.Image})
    monkeypatch.setenv("PIXELTABLE_ON_ERROR", "ignore")
    assert t.insert(img=str(bad_image)).num_excs == 1  # the deployment keeps bad rows
    with pytest.raises(pxt.Error):
        t.insert(img=str(bad_image), on_error="abort")  # the argument wins
    monkeypatch.delenv("PIXELTABLE_ON_ERROR")
    (catalog / "config.toml").write_text('[pixeltable]\non_error = "ignore"\n')
    assert load_settings().on_error == "ignore"
    assert t.insert(img=str(bad_image)).num_excs == 1
    (catalog / "config.toml").write_text('[pixeltable]\non_error = "skip"\n')
    with pytest.raises(ConfigError, match="on_error must be 'abort' or 'ignore'"):
        load_settings()
    with pytest.raises(pxt.Error, match="on_error must be 'abort' or 'ignore'"):
        t.insert(img=str(images[0]), on_error="skip")


def test_insert_job_keeps_bad_rows_whatever_the_default(catalog, images, bad_image):
    t = pxt.create_table("test_dir/t", {"img": pxt.Image})
    job = t.definitions().resolve_job_def("test_dir__t_job")
    import dagster as dg

    result = job.execute_in_process(instance=dg.DagsterInstance.get(), run_config={"ops": {"test_dir__t__insert": {
        "config": {"files": [str(images[0]), str(bad_image)]}}}})
    assert result.success and t.count() == 2


def test_add_computed_column_abort_leaves_no_column(catalog, images, bad_image):
    t = pxt.create_table("test_dir/t", {"img": pxt.Image})
    t.insert([{"img": str(images[0])}, {"img": str(bad_image)}], on_error="ignore")
    with pytest.raises(pxt.Error, match="column 'rot' failed for row 1"):
        t.add_computed_column(rot=t.img.rotate(90))
    assert t.columns() == ["img"] and files_under(catalog / "media") == []


def test_replace_force_drops_views(catalog, tmp_path):
    from pxt_assets.functions.video import frame_iterator

    videos = pxt.create_table("test_dir/videos", {"video": pxt.Video})
    videos.insert(video=str(make_video(tmp_path / "v.mp4", seconds=0.3)))
    pxt.create_view("test_dir/frames", videos, iterator=frame_iterator(videos.video, fps=1))
    with pytest.raises(pxt.Error, match="replace_force") as e:
        pxt.create_table("test_dir/videos", {"video": pxt.Video}, if_exists="replace")
    assert e.value.error_code is pxt.ErrorCode.CONSTRAINT_VIOLATION
    fresh = pxt.create_table("test_dir/videos", {"video": pxt.Video}, if_exists="replace_force")
    assert fresh.count() == 0 and pxt.list_tables("test_dir") == ["test_dir/videos"]


def test_our_errors_are_pixeltables(tmp_path):
    e = SpecError("table 'x' does not exist", error_code=pxt.ErrorCode.PATH_NOT_FOUND)
    assert isinstance(e, pxt.NotFoundError) and isinstance(e, SpecError) and isinstance(e, ValueError)
    back = pickle.loads(pickle.dumps(e))
    assert (type(back).__name__, back.error_code, str(back)) == ("SpecError", pxt.ErrorCode.PATH_NOT_FOUND, str(e))
    assert pxt.Error.from_dict(e.to_dict()).error_code is pxt.ErrorCode.PATH_NOT_FOUND
    assert isinstance(SpecError("bad"), pxt.RequestError) and SpecError("bad").http_status == 422
    nf = stores.StoreError("gone", kind="not_found")
    assert isinstance(nf, pxt.NotFoundError) and nf.error_code is pxt.ErrorCode.STORAGE_NOT_FOUND
    slow = stores.StoreError("slow", kind="throttled")
    assert isinstance(slow, pxt.ExternalServiceError) and slow.is_retryable and slow.retryable
    assert ConfigError("x", key="k").error_code is pxt.ErrorCode.INVALID_CONFIGURATION


def test_drop_table_takes_a_code_table(pxt_home, tmp_path, monkeypatch, images):
    (tmp_path / "dh").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    t = pxt.MediaTable("code/t", {"img": pxt.Image})
    t.insert(img=str(make_image(tmp_path / "a.jpg")))
    pxt.drop_table(t)
    assert t.batches() == []
    with pytest.raises(pxt.Error, match="expected a table path or a table") as e:
        pxt.drop_table(27)
    assert e.value.error_code is pxt.ErrorCode.TYPE_MISMATCH


def test_unstored_column_is_computed_when_read(catalog, images):
    t = pxt.create_table("test_dir/t", {"img": pxt.Image})
    t.insert([{"img": str(f)} for f in images[:2]])
    status = t.add_computed_column(rot=t.img.rotate(90), stored=False)
    assert status.num_rows == 0  # nothing computed now
    t.add_computed_column(w=t.rot.width, stored=False)  # an unstored column of an unstored column
    assert "test_dir__t__computed" not in {a.node_def.name for a in t.definitions().assets if hasattr(a, "node_def")}
    again = pxt.get_table("test_dir/t")  # as another process has it
    assert again.columns() == ["img", "rot", "w"] and not again.spec.columns["w"].stored
    got = again.select(again.rot, again.w).collect()
    assert list(got.columns) == ["rot", "w"]
    assert [im.size[0] for im in got["rot"]] == list(got["w"])
    assert again.where(again.w > 0).count() == 2
    assert set(again.collect().columns) >= {"img", "rot", "w"}
    again.insert(img=str(images[2]))  # a new batch: nothing to compute for them
    assert again.count() == 3 and files_under(catalog / "media") == []
    with pytest.raises(pxt.Error, match="rot"):
        again.drop_column("img")  # rot (and w) read it
    # w holds rot's expression (not a reference to it, unlike Pixeltable): dropping rot leaves w working
    again.drop_column("rot")
    assert again.columns() == ["img", "w"] and again.where(again.w > 0).count() == 3
    again.drop_column("w")
    assert again.columns() == ["img"]


def test_update_reruns_only_what_the_new_values_change(catalog, tmp_path):
    small, big = make_image(tmp_path / "small.jpg", size=(20, 10)), make_image(tmp_path / "big.jpg", size=(60, 30))
    t = pxt.create_table("test_dir/t", {"img": pxt.Image, "label": pxt.String})
    t.add_computed_column(h=t.img.rotate(90).height)
    t.insert([{"img": str(small), "label": x} for x in "abc"])
    status = t.update({"img": str(big)}, where=t.label == "b")
    assert (status.num_rows, status.num_computed_values, status.num_excs) == (1, 1, 0)
    assert status.updated_cols == ["t.img", "t.h"]
    got = t.order_by(t.label).select(t.label, t.h, t.img.fileurl).collect()
    assert list(got["h"]) == [20, 60, 20]
    assert path_of(got[1, 2]) == big and t.batches() == [status.batch]
    # every row, no filter
    assert t.update({"label": "z"}).num_rows == 3 and t.where(t.label == "z").count() == 3
    with pytest.raises(pxt.Error, match="expected non-None"):
        pxt.create_table("test_dir/r", {"c": pxt.Required[pxt.Int]}).update({"c": None})
