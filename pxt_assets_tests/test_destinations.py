"""Destination precedence and validation: column destination > output/input_media_dest > $PIXELTABLE_HOME/media."""

from __future__ import annotations


import pytest

import pxt_assets as pxt
from pxt_assets_tests.conftest import files_under, stored_records
from pxt_assets.stores import path_of



def test_column_destination_beats_output_media_dest_which_beats_default(pxt_home, tmp_path, instance, images):
    configured, explicit = tmp_path / "configured_out", tmp_path / "explicit"
    configured.mkdir(), explicit.mkdir()

    t_default = pxt.MediaTable("prec/default_only", {"img": pxt.Image})
    t_default.add_computed_column(flipped=t_default.img.transpose(0))
    assert t_default.spec.columns["flipped"].destination == (pxt_home / "media").as_uri()

    (pxt_home / "config.toml").write_text(f'[pixeltable]\noutput_media_dest = "{configured}"\n')
    t = pxt.MediaTable("prec/media", {"img": pxt.Image})
    t.add_computed_column(flipped=t.img.transpose(0))
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(explicit))
    assert t.spec.columns["flipped"].destination_source.startswith("output_media_dest")
    assert t.spec.columns["rotated"].destination_source == "column destination"

    t.insert(img=str(images[0]), instance=instance)
    row = t.select(t.flipped.fileurl, t.rotated.fileurl).collect().to_pandas().iloc[0]
    assert path_of(row["flipped_fileurl"]).is_relative_to(configured)
    assert path_of(row["rotated_fileurl"]).is_relative_to(explicit)
    assert len(files_under(configured)) == 1 and len(files_under(explicit)) == 1
    assert not (pxt_home / "media").exists() or files_under(pxt_home / "media") == []


def test_environment_output_media_dest_beats_config_file(pxt_home, tmp_path, monkeypatch):
    from_file, from_env = tmp_path / "file_dest", tmp_path / "env_dest"
    from_file.mkdir(), from_env.mkdir()
    (pxt_home / "config.toml").write_text(f'[pixeltable]\noutput_media_dest = "{from_file}"\n')
    monkeypatch.setenv("PIXELTABLE_OUTPUT_MEDIA_DEST", str(from_env))
    t = pxt.MediaTable("prec/env", {"img": pxt.Image})
    t.add_computed_column(flipped=t.img.transpose(0))
    assert t.spec.columns["flipped"].destination == from_env.as_uri()
    assert "PIXELTABLE_OUTPUT_MEDIA_DEST" in t.spec.columns["flipped"].destination_source


def test_missing_local_destination_is_an_error_naming_column_and_path(pxt_home, tmp_path):
    t = pxt.MediaTable("val/missing", {"img": pxt.Image})
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(pxt.DestinationError) as e:
        t.add_computed_column(rotated=t.img.rotate(90), destination=str(missing))
    assert "'rotated'" in str(e.value) and str(missing) in str(e.value)
    assert "rotated" not in t.spec.columns


def test_relative_destination_is_made_absolute_when_the_table_is_defined(pxt_home, tmp_path, monkeypatch, instance, images):
    (tmp_path / "rel_out").mkdir()
    monkeypatch.chdir(tmp_path)
    t = pxt.MediaTable("val/relative", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination="rel_out")
    assert t.spec.columns["rotated"].destination == (tmp_path / "rel_out").as_uri()
    monkeypatch.chdir(pxt_home)  # a later working directory must not change where files go
    t.insert(img=str(images[0]), instance=instance)
    assert len(files_under(tmp_path / "rel_out")) == 1


@pytest.mark.parametrize("bad", ["ftp://host/dir/", "foo://bucket/x/"])
def test_unsupported_destination_scheme_lists_what_is_supported(pxt_home, bad):
    t = pxt.MediaTable("val/scheme", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError) as e:
        t.add_computed_column(rotated=t.img.rotate(90), destination=bad)
    msg = str(e.value)
    assert "'rotated'" in msg and bad in msg and "local path" in msg


def test_http_url_cannot_be_a_destination(pxt_home):
    t = pxt.MediaTable("val/http", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError, match="read-only"):
        t.add_computed_column(rotated=t.img.rotate(90), destination="http://127.0.0.1:9/out/")


def test_destination_on_a_source_column_is_refused(pxt_home, tmp_path):
    t = pxt.MediaTable("val/source", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError, match="only to computed columns"):
        t.add_column(other=pxt.Image, destination=str(tmp_path))


def test_destination_on_a_non_media_column_is_refused(pxt_home, tmp_path):
    t = pxt.MediaTable("val/nonmedia", {"img": pxt.Image})
    with pytest.raises(pxt.DestinationError, match="only to media columns"):
        t.add_computed_column(width=t.img.width, destination=str(tmp_path))


def test_local_input_media_dest_must_exist_too(pxt_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", str(tmp_path / "nope"))
    with pytest.raises(pxt.DestinationError) as e:
        pxt.MediaTable("val/input_dest", {"img": pxt.Image})
    assert "'img'" in str(e.value) and "nope" in str(e.value)


def test_resolved_destination_is_recorded_with_each_file(pxt_home, tmp_path, instance, images):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("rec/media", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    result = t.insert([{"img": str(p)} for p in images], instance=instance)
    records = stored_records(t, "rotated", result.batch)
    assert [r["destination"] for r in records] == [out.as_uri()] * 3
    assert all(r["owned"] for r in records)
    assert all(path_of(r["value"]).is_file() and path_of(r["value"]).is_relative_to(out) for r in records)


def test_destination_removed_after_definition_fails_the_run_naming_it(pxt_home, tmp_path, instance, images):
    out = tmp_path / "vanishing"
    out.mkdir()
    t = pxt.MediaTable("rec/vanish", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    out.rmdir()
    with pytest.raises(RuntimeError) as e:
        t.insert(img=str(images[0]), instance=instance)
    assert "'rotated'" in str(e.value) and str(out) in str(e.value)
    assert not out.exists()
