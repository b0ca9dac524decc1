"""The seeds' "Where do my files go?" table, for local files and HTTP URLs (served on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import pathlib

import pytest

import pxt_assets as pxt
from pxt_assets_tests.conftest import files_under
from pxt_assets.stores import path_of


def _digest(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()



def test_local_file_without_input_media_dest_is_referenced_in_place(pxt_home, instance, images):
    t = pxt.MediaTable("inp/local_ref", {"img": pxt.Image})
    t.insert(img=str(images[0]), instance=instance)
    assert t.select(t.img.fileurl).collect().to_pandas().iloc[0, 0] == images[0].as_uri()
    assert t.select(t.img.localpath).collect().to_pandas().iloc[0, 0] == str(images[0])
    # no copy anywhere: nothing in the media folder, no image in the cache
    assert files_under(pxt_home / "media") == []
    assert [p for p in files_under(pxt_home / "file_cache") if p.suffix == ".jpg"] == []


def test_local_file_with_local_input_media_dest_is_copied_there(pxt_home, tmp_path, monkeypatch, instance, images):
    dest = tmp_path / "inputs_copy"
    dest.mkdir()
    monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", str(dest))
    t = pxt.MediaTable("inp/local_copy", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    t.insert([{"img": str(p)} for p in images], instance=instance)
    urls = list(t.select(t.img.fileurl).collect().to_pandas().iloc[:, 0])
    copies = [path_of(u) for u in urls]
    assert all(c.is_relative_to(dest) for c in copies)
    assert [_digest(c) for c in copies] == [_digest(p) for p in images]
    assert all(p.is_file() for p in images)  # originals untouched
    assert list(t.select(t.w).collect()["w"]) == [481, 640, 640]


def test_file_url_input_is_referenced_in_place(pxt_home, instance, images):
    t = pxt.MediaTable("inp/file_url", {"img": pxt.Image})
    t.add_computed_column(h=t.img.height)
    t.insert(img=images[1].as_uri(), instance=instance)
    row = t.select(t.img.fileurl, t.h).collect().to_pandas().iloc[0]
    assert row["img_fileurl"] == images[1].as_uri() and row["h"] == 429


@pytest.mark.parametrize("input_dest", [None, "local"])
def test_url_is_stored_as_given_and_downloaded_lazily_on_first_access(pxt_home, tmp_path, monkeypatch, instance,
                                                                       http_server, input_dest):
    if input_dest == "local":
        (tmp_path / "in_dest").mkdir()
        monkeypatch.setenv("PIXELTABLE_INPUT_MEDIA_DEST", str(tmp_path / "in_dest"))
    t = pxt.MediaTable("inp/url_lazy", {"img": pxt.Image})
    url = http_server.url("000000000036.jpg")
    t.insert(img=url, instance=instance)
    assert http_server.requests["/000000000036.jpg"] == 0  # insert stores the reference only
    assert t.select(t.img.fileurl).collect().to_pandas().iloc[0, 0] == url
    local = t.select(t.img.localpath).collect().to_pandas().iloc[0, 0]
    assert http_server.requests["/000000000036.jpg"] == 1
    assert pathlib.Path(local).is_relative_to(pxt_home / "file_cache")
    assert _digest(local) == _digest(http_server.root / "000000000036.jpg")
    t.select(t.img.localpath).collect()
    assert http_server.requests["/000000000036.jpg"] == 1  # second access is a cache hit
    if input_dest == "local":
        assert files_under(tmp_path / "in_dest") == []  # URLs are not copied to a local input_media_dest


def test_url_query_string_is_kept_and_sent(pxt_home, instance, http_server):
    t = pxt.MediaTable("inp/url_query", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    url = http_server.url("000000000090.jpg") + "?X-Amz-Signature=abc&token=1"
    t.insert(img=url, instance=instance)
    row = t.select(t.img.fileurl, t.w).collect().to_pandas().iloc[0]
    assert row["img_fileurl"] == url and row["w"] == 640
    assert "/000000000090.jpg?X-Amz-Signature=abc&token=1" in http_server.full_requests


def test_source_read_by_several_computed_columns_is_downloaded_once(pxt_home, tmp_path, instance, http_server):
    out = tmp_path / "out"
    out.mkdir()
    t = pxt.MediaTable("inp/url_once", {"img": pxt.Image})
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(out))
    t.add_computed_column(flipped=t.img.transpose(0))
    t.add_computed_column(thumbnail=t.img.thumbnail((32, 32)), destination=str(out))
    t.add_computed_column(width=t.img.width)
    names = ["000000000036.jpg", "000000000090.jpg", "000000000106.jpg"]
    result = t.insert([{"img": http_server.url(n)} for n in names], instance=instance)
    assert result.num_errors == 0
    assert {n: http_server.requests["/" + n] for n in names} == {n: 1 for n in names}
    frame = t.select(t.rotated.localpath, t.thumbnail.localpath).collect().to_pandas()
    assert len(frame) == 3 and all(pathlib.Path(p).is_file() for p in frame.values.ravel())
