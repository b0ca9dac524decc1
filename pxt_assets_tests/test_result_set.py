"""collect() returns Pixeltable's ResultSet: its HTML in Jupyter (thumbnails, links), the pinning `with` block
kept, to_pandas() for DataFrame code; and a frames view ordered by its frames, by position."""

from __future__ import annotations

import pathlib

import PIL.Image

import pxt_assets as pxt
from pxt_assets.functions.video import frame_iterator
from pxt_assets_tests.mediagen import make_video


def test_html_shows_images_as_thumbnails_and_fileurls_as_links(pxt_home, images):
    t = pxt.create_table("rs_html", {"img": pxt.Image, "label": pxt.String})
    t.add_computed_column(small=t.img.resize((40, 30)))
    t.insert([{"img": str(p), "label": f"<b>{i}</b>"} for i, p in enumerate(images[:2])])
    rs = t.select(t.small, t.small.fileurl, t.label, n=t.img.width + 1).collect()
    html = rs._repr_html_()
    assert html.count('<img src="data:image/jpeg;base64,') == 2  # inline thumbnails
    for url in rs["small_fileurl"]:
        assert url.startswith("file://") and f'<a href="{url}" target="_blank">{url}</a>' in html
    assert "&lt;b&gt;0&lt;/b&gt;" in html and "<b>0</b>" not in html  # text is escaped
    assert [f"<th>{c}</th>" in html for c in ("small", "small_fileurl", "label", "n")] == [True] * 4
    assert rs.schema == {"small": "Image", "small_fileurl": "String", "label": "String", "n": "Int"}
    frame = rs.to_pandas()
    assert list(frame.columns) == ["small", "small_fileurl", "label", "n"] and str(frame["n"].dtype) == "Int64"
    assert isinstance(rs[0]["small"], PIL.Image.Image) and rs[1, "label"] == "<b>1</b>"
    assert "small" in repr(rs) and "label" in str(rs) and len(rs) == 2


def test_html_plays_small_videos_and_audio_inline(pxt_home, tmp_path):
    from pxt_assets_tests.mediagen import make_wav

    video, audio = make_video(tmp_path / "v.mp4", seconds=1.0), make_wav(tmp_path / "a.wav", seconds=0.5)
    t = pxt.create_table("rs_av", {"video": pxt.Video, "audio": pxt.Audio})
    t.insert([{"video": str(video), "audio": str(audio)}])
    html = t.select(t.video, t.audio, t.video.fileurl).collect()._repr_html_()
    assert '<video controls width="240"><source src="data:video/mp4;base64,' in html
    assert '<audio controls><source src="data:audio/' in html
    assert f'<a href="{video.as_uri()}"' in html
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nText.")
    d = pxt.create_table("rs_docs", {"doc": pxt.Document})
    d.insert([{"doc": str(doc)}])
    assert f'<a href="{doc.as_uri()}" target="_blank">{doc}</a>' in d.select(d.doc).collect()._repr_html_()


def test_with_block_releases_the_pins_of_remote_localpaths(pxt_home, http_server):
    t = pxt.create_table("rs_pins", {"img": pxt.Image})
    names = sorted(p.name for p in http_server.root.iterdir() if p.name != "corrupt.jpg")
    t.insert([{"img": http_server.url(name)} for name in names])
    with t.select(t.img.localpath).collect() as rs:
        paths = rs["img_localpath"]
        assert paths and all(p.pinned and pathlib.Path(p).is_file() for p in paths)
    assert not any(p.pinned for p in paths)  # released at the end of the block
    again = t.select(t.img.localpath).collect()
    assert again.release() == len(again) and again.release() == 0


def test_a_frames_view_ordered_by_its_frames_is_in_position_order(pxt_home, tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=12.0, fps=5)
    videos = pxt.create_table("rs_videos", {"video": pxt.Video})
    videos.insert([{"video": str(video)}])
    frames = pxt.create_view("rs_frames", videos, iterator=frame_iterator(videos.video, fps=1))
    assert frames.order_by(frames.frame).select(frames.pos).collect()["pos"] == list(range(12))  # not 0, 1, 10, 11, 2
    assert frames.order_by(frames.frame.fileurl, asc=False).limit(3).select(frames.pos).collect()["pos"] == [11, 10, 9]
    assert frames.where(frames.pos > 7).order_by(frames.frame).select(frames.pos).collect()["pos"] == [8, 9, 10, 11]
    assert frames.tail(2)["pos"] == [10, 11] and frames.head(2)["pos"] == [0, 1]
