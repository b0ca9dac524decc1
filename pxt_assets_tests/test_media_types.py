"""Video, audio and documents: validated on insert (a file that does not open is that row's error, naming
the column and the file), and metadata functions usable in columns and queries."""

from __future__ import annotations

import pytest

import pxt_assets as pxt
from pxt_assets_tests.mediagen import make_pdf, make_video, make_wav


@pytest.fixture
def media_files(tmp_path):
    d = tmp_path / "media"
    d.mkdir()
    files = {
        "video": make_video(d / "clip.mp4", seconds=2.0, fps=10),
        "long_video": make_video(d / "long.mp4", seconds=4.0, fps=10),
        "audio": make_wav(d / "tone.wav", seconds=1.5),
        "pdf": make_pdf(d / "doc.pdf", pages=3),
        "md": d / "notes.md",
        "bad_video": d / "random.mp4",
        "bad_pdf": d / "broken.pdf",
        "binary_doc": d / "blob.bin",
    }
    files["md"].write_text("# Title\n\nSome text.\n")
    files["bad_video"].write_bytes(b"\x00\x01random bytes, not a video" * 100)
    files["bad_pdf"].write_bytes(b"%PDF-1.7\nthis is not really a pdf")
    files["binary_doc"].write_bytes(bytes(range(256)))
    return files


def test_media_that_does_not_open_is_the_rows_error_and_the_batch_goes_on(pxt_home, instance, media_files):
    pxt.create_dir("m")
    t = pxt.create_table("m/clips", {"video": pxt.Video})
    result = t.insert([{"video": str(media_files["video"])}, {"video": str(media_files["bad_video"])},
                       {"video": str(media_files["audio"])}], instance=instance)
    assert result.num_rows == 3 and result.num_errors == 2
    got = t.select(t.video.fileurl, t.video.errormsg).collect()
    assert [u for u in got["video_fileurl"] if u is not None] == [media_files["video"].as_uri()]
    bad = [m for m in got["video_errormsg"] if m]
    assert any(m.startswith("video: not a readable video: ") and str(media_files["bad_video"]) in m for m in bad)
    assert any(m == f"video: no video stream in {media_files['audio']}" for m in bad)
    assert t.where(t.video.errortype == "decode_error").count() == 2

    a = pxt.create_table("m/sounds", {"audio": pxt.Audio})
    result = a.insert([{"audio": str(media_files["audio"])}, {"audio": str(media_files["bad_video"])}],
                      instance=instance)
    assert result.num_errors == 1

    d = pxt.create_table("m/docs", {"doc": pxt.Document})
    result = d.insert([{"doc": str(media_files[k])} for k in ("pdf", "md", "bad_pdf", "binary_doc")],
                      instance=instance)
    assert result.num_errors == 2
    msgs = [m for m in d.select(d.doc.errormsg).collect().to_pandas().iloc[:, 0] if m]
    assert any(m.startswith("doc: not a readable PDF: ") and "broken.pdf" in m for m in msgs), msgs
    assert any(m.startswith("doc: not a readable document: ") and "blob.bin" in m for m in msgs), msgs


def test_metadata_functions_in_columns_and_where(pxt_home, instance, media_files):
    pxt.create_dir("m")
    t = pxt.create_table("m/clips", {"video": pxt.Video})
    t.add_computed_column(info=t.video.get_metadata())
    t.add_computed_column(duration=t.video.get_duration())
    t.insert([{"video": str(media_files["video"])}, {"video": str(media_files["long_video"])}], instance=instance)
    got = t.select(t.duration, t.info.streams[0].width, t.info.streams[0].codec_context.name, t.info.size).collect().to_pandas()
    assert sorted(round(d, 1) for d in got["duration"]) == [2.0, 4.0]
    assert set(got.iloc[:, 1]) == {64} and set(got.iloc[:, 2]) == {"h264"} and got.iloc[0, 3] > 0
    assert t.where(t.duration > 3).count() == 1

    a = pxt.create_table("m/sounds", {"audio": pxt.Audio})
    a.add_computed_column(duration=a.audio.get_duration())
    a.add_computed_column(info=a.audio.get_metadata())
    a.insert([{"audio": str(media_files["audio"])}], instance=instance)
    row = a.select(a.duration, a.info.streams[0].duration_seconds, a.info.streams[0].codec_context.channels
                   ).collect().to_pandas().iloc[0]
    assert round(row.iloc[0], 2) == 1.5 and round(row.iloc[1], 2) == 1.5 and row.iloc[2] == 1

    d = pxt.create_table("m/docs", {"doc": pxt.Document})
    d.add_computed_column(pages=d.doc.get_page_count())
    d.add_computed_column(info=d.doc.get_metadata())
    d.insert([{"doc": str(media_files["pdf"])}, {"doc": str(media_files["md"])}], instance=instance)
    assert sorted(d.select(d.pages).collect()["pages"]) == [1, 3]
    assert sorted(d.select(d.info.format).collect().to_pandas().iloc[:, 0]) == ["markdown", "pdf"]
    assert d.where(d.pages > 1).count() == 1
