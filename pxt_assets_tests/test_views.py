"""Iterators: frame_iterator, audio_splitter and document_splitter as views (tables whose batches follow their
base table's) and as columns (a Json list of the files written), their files in destinations, lifecycle."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import dagster as dg
import PIL.Image
import pytest

import pxt_assets as pxt
from pxt_assets import lifecycle
from pxt_assets.functions.audio import audio_splitter
from pxt_assets.functions.document import document_splitter
from pxt_assets.functions.video import check_media, duration_of, frame_iterator
from pxt_assets_tests.conftest import files_under, stored_records, unique_bucket
from pxt_assets_tests.mediagen import make_audio, make_text_pdf, make_video, make_wav

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def videos(pxt_home, instance, tmp_path):
    pxt.create_dir("vid")
    t = pxt.create_table("vid/videos", {"video": pxt.Video, "title": pxt.String})
    folder = tmp_path / "videos"
    folder.mkdir()
    t._test_files = [make_video(folder / "a.mp4", seconds=3.0, fps=10, gop=10),
                     make_video(folder / "b.mp4", seconds=2.0, fps=10, gop=10)]
    return t


@pxt.udf
def brightness(img: PIL.Image.Image) -> int:
    return _level(img)


def _level(img: PIL.Image.Image) -> int:
    return img.convert("L").getpixel((img.width // 2, img.height // 2))


def test_a_frame_view_follows_its_base_tables_batches(videos, instance, tmp_path):
    a, b = videos._test_files
    videos.insert([{"video": str(a), "title": "a"}], instance=instance)
    frames = pxt.create_view("vid/frames", videos, iterator=frame_iterator(videos.video, fps=2))
    assert isinstance(frames, pxt.MediaView) and frames.count() == 6  # a: 3 s at 2 fps
    thumbs = tmp_path / "thumbs"
    thumbs.mkdir()
    frames.add_computed_column(thumb=frames.frame.resize((16, 12)), destination=str(thumbs))
    frames.add_computed_column(level=frames.frame_attrs.index)
    frames.add_computed_column(bright=brightness(frames.frame))  # a UDF on a view's frames

    second = videos.insert([{"video": str(b), "title": "b"}], instance=instance)
    assert frames.count() == 10 and frames.batches() == videos.batches()  # b adds only its 4 frames
    assert len(stored_records(frames, "thumb", second.batch)) == 4 and len(files_under(thumbs)) == 10

    got = frames.select(frames.pos, frames.frame, frames.frame_attrs, frames.frame.fileurl).collect()
    assert list(got["pos"]) == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    for row in got:
        attrs = row["frame_attrs"]
        assert set(attrs) == {"index", "pts", "dts", "time", "is_corrupt", "key_frame", "pict_type",
                              "interlaced_frame"}
        assert attrs["index"] == 5 * row["pos"] and attrs["time"] == pytest.approx(row["pos"] / 2)
        # not written (no destination): the frame is decoded again from the video, the right one
        assert "#t=" in row["frame_fileurl"] and abs(_level(row["frame"]) - (10 * attrs["index"]) % 256) <= 3
    assert [abs(b - (10 * i) % 256) <= 3 for b, i in frames.select(frames.bright, frames.level).collect().to_pandas()
            .itertuples(index=False)] == [True] * 10
    assert not any(p.suffix == ".jpg" for p in files_under(pathlib.Path(str(a)).parent))
    # .localpath of a frame not written: decoded into the file cache
    paths = frames.where(frames.pos == 3).select(frames.frame.localpath, frames.frame_attrs.index).collect().to_pandas()
    for path, index in paths.itertuples(index=False):
        assert path.endswith(".png") and abs(_level(PIL.Image.open(path)) - (10 * index) % 256) <= 3
    assert frames.where(frames.frame_attrs.time >= 2.0).count() == 2
    assert frames.where(frames.pos == 0).count() == 2

    # lineage: the view's columns come from the base column, in the code location (a fresh process)
    graph = frames.definitions().resolve_asset_graph()
    assert dg.AssetKey(["vid", "videos", "video"]) in graph.get(dg.AssetKey(["vid", "frames", "frame"])).parent_keys
    code = ("from pxt_assets.definitions import defs; import dagster as dg; g = defs().resolve_asset_graph(); "
            "print(sorted(k.to_user_string() for k in g.get_all_asset_keys() if k.path[0] == 'vid')); "
            "print(sorted(k.to_user_string() for k in g.get(dg.AssetKey(['vid', 'frames', 'pos'])).parent_keys))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PXT_", "DAGSTER_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    keys, parents = done.stdout.strip().splitlines()[-2:]
    # the view has its base table's columns too (as Pixeltable's views do), each from the base's column
    assert keys == str(["vid/frames/bright", "vid/frames/frame", "vid/frames/frame_attrs", "vid/frames/level",
                        "vid/frames/pos", "vid/frames/thumb", "vid/frames/title", "vid/frames/video",
                        "vid/videos/title", "vid/videos/video"])
    assert parents == "['vid/videos/video']"
    assert graph.get(dg.AssetKey(["vid", "frames", "title"])).parent_keys == {dg.AssetKey(["vid", "videos", "title"])}

    # a batch deleted from the base table goes from its views too, files and all
    assert videos.delete(batch=second.batch, instance=instance) == 4
    assert frames.count() == 6 and len(files_under(thumbs)) == 6
    with pytest.raises(pxt.SpecError, match=r"has views \['vid/frames'\]"):
        pxt.drop_table("vid/videos")
    assert pxt.drop_table("vid/videos", force=True, instance=instance) == 6
    assert pxt.list_tables("vid") == [] and files_under(thumbs) == []


def test_frame_iterator_options_and_argument_errors(videos, instance):
    a, _ = videos._test_files
    videos.insert([{"video": str(a)}], instance=instance)
    every = pxt.create_view("vid/every", videos, iterator=frame_iterator(videos.video))
    some = pxt.create_view("vid/some", videos, iterator=frame_iterator(videos.video, num_frames=3))
    keys = pxt.create_view("vid/keys", videos, iterator=frame_iterator(videos.video, keyframes_only=True))
    assert every.count() == 30
    assert [a["index"] for a in some.select(some.frame_attrs).collect()["frame_attrs"]] == [5, 15, 25]
    key_attrs = list(keys.select(keys.frame_attrs).collect()["frame_attrs"])
    assert key_attrs and all(a["key_frame"] for a in key_attrs) and [a["index"] for a in key_attrs][:3] == [0, 10, 20]
    with pytest.raises(ValueError, match="At most one of `fps`, `num_frames` or `keyframes_only`"):
        frame_iterator(videos.video, fps=1, keyframes_only=True)
    with pytest.raises(ValueError, match="`fps` must be a positive number"):
        frame_iterator(videos.video, fps=0)
    with pytest.raises(pxt.SpecError, match=r"reads a pxt.Video column; 'title' is pxt.String"):
        pxt.create_view("vid/bad", videos, iterator=frame_iterator(videos.title, fps=1))
    with pytest.raises(pxt.SpecError, match="insert into that table"):
        every.insert([{"pos": 1}])


def test_frames_with_a_destination_are_written_to_a_bucket(pxt_home, instance, s3_env, tmp_path):
    bucket = unique_bucket("frames")
    s3 = s3_env.client()
    s3.create_bucket(Bucket=bucket)
    video = make_video(tmp_path / "clip.mp4", seconds=2.0)
    s3.upload_file(str(video), bucket, "in/clip.mp4")
    pxt.create_dir("cloud")
    videos = pxt.create_table("cloud/videos", {"video": pxt.Video})
    frames = pxt.create_view("cloud/frames", videos, iterator=frame_iterator(videos.video, fps=1),
                             destination=f"s3://{bucket}/frames/")
    videos.insert([{"video": f"s3://{bucket}/in/clip.mp4"}], instance=instance)
    recs = stored_records(frames, "frame")
    assert len(recs) == 2 and all(r["owned"] and r["destination"] == f"s3://{bucket}/frames/" for r in recs)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="frames/")["Contents"])
    assert [f"s3://{bucket}/{k}" for k in keys] == sorted(r["value"] for r in recs)
    from pxt_assets.functions import net

    urls = frames.select(net.presigned_url(frames.frame.fileurl, 600)).collect().to_pandas().iloc[:, 0]
    import urllib.request

    for url in urls:
        with urllib.request.urlopen(url) as resp:
            assert PIL.Image.open(resp).size == (64, 48)
    assert lifecycle.find_orphans(f"s3://{bucket}/frames/", min_age=0) == []


def test_audio_segments_open_and_cover_the_file(pxt_home, instance, tmp_path):
    pxt.create_dir("aud")
    sounds = pxt.create_table("aud/sounds", {"audio": pxt.Audio})
    wav = make_wav(tmp_path / "tone.wav", seconds=10.02)
    m4a = make_audio(tmp_path / "tone.m4a", seconds=7.0, codec="aac")
    mp3 = make_audio(tmp_path / "tone.mp3", seconds=7.0, codec="mp3")
    sounds.insert([{"audio": str(p)} for p in (wav, m4a, mp3)], instance=instance)
    seg_dest = tmp_path / "segments"
    seg_dest.mkdir()
    segs = pxt.create_view("aud/segs", sounds, iterator=audio_splitter(sounds.audio, duration=3.0),
                           destination=str(seg_dest))
    overlapping = pxt.create_view("aud/overlap", sounds, iterator=audio_splitter(sounds.audio, duration=2.0,
                                                                                 overlap=0.5))
    sized = pxt.create_view("aud/sized", sounds, iterator=audio_splitter(sounds.audio, max_size=40_000))
    sized_overlap = pxt.create_view("aud/sized_overlap", sounds, iterator=audio_splitter(
        sounds.audio, max_size=40_000, overlap=2.0))
    dropped = pxt.create_view("aud/dropped", sounds, iterator=audio_splitter(sounds.audio, duration=4.0,
                                                                             min_segment_duration=2.5))
    for view in (segs, overlapping, sized, sized_overlap, dropped):
        rows = view.select(view.segment_start, view.segment_end, view.audio_segment.localpath,
                           view.audio_segment.fileurl).collect().to_pandas().to_dict("records")
        assert rows and view.where(view.audio_segment.errortype != None).count() == 0  # noqa: E711
        for r in rows:
            path = r["audio_segment_localpath"]
            check_media(path, "audio")  # every segment opens and decodes: no one-packet tail
            assert r["segment_end"] > r["segment_start"] and duration_of(path, "audio") > 0.05
            if view in (sized, sized_overlap):
                assert os.path.getsize(path) <= 40_000
    by_file = {}
    for r in segs.select(segs.segment_start, segs.segment_end, segs.audio_segment.fileurl).collect().to_pandas().to_dict("records"):
        by_file.setdefault(r["audio_segment_fileurl"].rsplit(".", 1)[-1], []).append(r)
    wav_rows = sorted(by_file["wav"], key=lambda r: r["segment_start"])
    assert [round(r["segment_start"], 1) for r in wav_rows] == [0.0, 3.0, 6.0, 9.0]
    assert wav_rows[-1]["segment_end"] == pytest.approx(10.02, abs=0.01)
    assert len(files_under(seg_dest)) == segs.count()
    # overlap: each segment starts about 0.5 s before the previous one ends
    ov = sorted((r for r in overlapping.select(overlapping.segment_start, overlapping.segment_end,
                                               overlapping.audio_segment.fileurl).collect().to_pandas().to_dict("records")
                 if r["audio_segment_fileurl"].endswith(".wav")), key=lambda r: r["segment_start"])
    assert all(prev["segment_end"] - nxt["segment_start"] == pytest.approx(0.5, abs=0.1)
               for prev, nxt in zip(ov, ov[1:]))
    # min_segment_duration: a 10.02 s file in 4 s segments has a 2.02 s tail, dropped
    assert sum(1 for u in dropped.select(dropped.audio_segment.fileurl).collect().to_pandas().iloc[:, 0] if u.endswith(".wav")) == 2


def test_document_chunks_pages_headings_and_page_images(pxt_home, instance, tmp_path):
    pxt.create_dir("docs")
    docs = pxt.create_table("docs/docs", {"doc": pxt.Document})
    pdf = make_text_pdf(tmp_path / "report.pdf", ["Intro page. It has two sentences.", "Results page.",
                                                   "Appendix."], title="Quarterly report")
    md = tmp_path / "notes.md"
    md.write_text("# Notes\n\nOpening words.\n\n## Part A\n\nAlpha text. More alpha.\n\n## Part B\n\nBeta text.\n")
    html = tmp_path / "page.html"
    html.write_text("<html><head><title>Web page</title></head><body><h1>Top</h1><p>First para.</p>"
                    "<h2>Sub</h2><p>Second para.</p><script>ignored()</script></body></html>")
    docs.insert([{"doc": str(p)} for p in (pdf, md, html)], instance=instance)

    pages = pxt.create_view("docs/pages", docs, iterator=document_splitter(
        docs.doc, "page", elements=["text", "image"], metadata="title,page", image_dpi=36))
    got = pages.where(pages.page != None).select(pages.text, pages.page, pages.title, pages.image).collect()  # noqa: E711
    assert list(got["text"]) == ["Intro page. It has two sentences.", "Results page.", "Appendix."]
    assert list(got["page"]) == [0, 1, 2] and set(got["title"]) == {""}  # Pixeltable: a PDF has no title
    assert {img.size for img in got["image"]} == {(306, 396)}  # 612 x 792 pt at 36 dpi
    assert pages.where(pages.text == "Results page.").count() == 1

    # Pixeltable's splitting: a heading opens its section; paragraphs and sentences split at headings too
    sections = pxt.create_view("docs/sections", docs, iterator=document_splitter(
        docs.doc, "heading,sentence", metadata="title,heading,sourceline"))
    rows = sections.select(sections.text, sections.title, sections.heading, sections.sourceline).collect().to_pandas()
    md_rows = [r for r in rows.to_dict("records") if r["heading"] and r["heading"].get("h1") == "Notes"]
    assert [r["text"] for r in md_rows] == ["Notes", "Opening words.", "Part A", "Alpha text. ", "More alpha.",
                                            "Part B", "Beta text."]
    assert md_rows[3]["heading"] == {"h1": "Notes", "h2": "Part A"} and md_rows[3]["sourceline"] == 0
    html_rows = [r for r in rows.to_dict("records") if r["title"] == "Web page"]
    assert [r["text"] for r in html_rows] == ["Web page", "Top", "First para.", "Sub", "Second para."]
    assert html_rows[4]["heading"] == {"h1": "Top", "h2": "Sub"} and html_rows[4]["sourceline"] == 1

    limited = pxt.create_view("docs/limited", docs, iterator=document_splitter(
        docs.doc, "char_limit", limit=12, overlap=3))
    assert all(len(t) <= 12 for t in limited.select(limited.text).collect()["text"])
    with pytest.raises(ValueError, match="Invalid separator: `chapter`"):
        document_splitter(docs.doc, "chapter")
    with pytest.raises(ValueError, match="'limit' must be specified"):
        document_splitter(docs.doc, "token_limit")


def test_a_base_row_the_iterator_cannot_read_is_one_row_in_error(pxt_home, instance, tmp_path):
    pxt.create_dir("vid")
    videos = pxt.create_table("vid/videos", {"video": pxt.Video})
    good = make_video(tmp_path / "good.mp4", seconds=1.0)
    frames = pxt.create_view("vid/frames", videos, iterator=frame_iterator(videos.video, fps=2))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good.read_bytes())
    videos.insert([{"video": str(good)}, {"video": str(broken)}], instance=instance)
    # the base table validated both; now one changes under it (as a file replaced in place would)
    broken.write_bytes(b"\x00" * 4096)
    videos.insert([{"video": str(good)}], instance=instance)
    frames_before = frames.count()
    frames._populate(instance)  # recompute every batch: the broken file is now read again
    errs = frames.where(frames.frame.errortype == "iterator_error").select(frames.frame.errormsg).collect().to_pandas()
    assert len(errs) == 1 and "frame_iterator failed on vid/videos row" in errs.iloc[0, 0]
    assert str(broken) in errs.iloc[0, 0]
    assert frames.count() == frames_before - 2 + 1  # the broken video's 2 frames became 1 row in error


def test_iterators_as_columns_list_the_files_they_wrote(pxt_home, instance, tmp_path):
    pxt.create_dir("cols")
    t = pxt.create_table("cols/media", {"video": pxt.Video, "audio": pxt.Audio, "doc": pxt.Document})
    frames_dest = tmp_path / "frames"
    frames_dest.mkdir()
    t.add_computed_column(frames=frame_iterator(t.video, fps=1), destination=str(frames_dest))
    t.add_computed_column(segments=audio_splitter(t.audio, duration=2.0))
    t.add_computed_column(chunks=document_splitter(t.doc, "page", elements=["text", "image"], image_dpi=18,
                                                   image_format="png"))
    t.add_computed_column(n_frames=t.frames[0:100])
    t.insert([{"video": str(make_video(tmp_path / "v.mp4", seconds=3.0)),
               "audio": str(make_wav(tmp_path / "a.wav", seconds=3.0)),
               "doc": str(make_text_pdf(tmp_path / "d.pdf", ["one", "two"]))}], instance=instance)
    row = t.select(t.frames, t.segments, t.chunks).collect().to_pandas().iloc[0]
    assert [f["pos"] for f in row["frames"]] == [0, 1, 2]
    assert all(f["frame"].startswith(frames_dest.as_uri()) for f in row["frames"])
    assert [round(s["segment_start"], 2) for s in row["segments"]] == [0.0, 2.05] or \
        [round(s["segment_start"], 1) for s in row["segments"]] == [0.0, 2.0]
    assert [c["text"] for c in row["chunks"]] == ["one", "two"] and all(c["image"].endswith(".png") for c in row["chunks"])
    assert len(files_under(frames_dest)) == 3
    assert t.select(t.frames[1].frame_attrs.time).collect().to_pandas().iloc[0, 0] == 1.0
    # its files are the column's: not orphans to gc, deleted with the column
    assert lifecycle.find_orphans(frames_dest.as_uri(), min_age=0) == []
    assert t.drop_column("n_frames") == 0 and t.drop_column("frames") == 3 and files_under(frames_dest) == []
    assert pxt.drop_table("cols/media") == 4  # two audio segments and two page images


def test_review_cases_files_named_in_text_changed_and_missing_videos_mpeg_ts(pxt_home, instance, tmp_path):
    from pxt_assets import evaluate

    pxt.create_dir("rv")
    # text naming a file under the destination is text: dropping the column keeps the user's file
    dest = tmp_path / "chunks"
    dest.mkdir()
    precious = dest / "precious.csv"
    precious.write_text("keep me")
    docs = pxt.create_table("rv/docs", {"doc": pxt.Document})
    md = tmp_path / "n.md"
    md.write_text(f"# T\n\n{precious.as_uri()}\n\nOther text.\n")
    docs.add_computed_column(chunks=document_splitter(docs.doc, "paragraph"), destination=str(dest))
    docs.insert([{"doc": str(md)}], instance=instance)
    docs.drop_column("chunks")
    assert precious.read_text() == "keep me"

    # a video changed in place: its frames' columns are recomputed; a missing one is its rows' errors
    videos = pxt.create_table("rv/videos", {"video": pxt.Video})
    a, b = make_video(tmp_path / "a.mp4", seconds=1.0), make_video(tmp_path / "b.mp4", seconds=1.0)
    videos.insert([{"video": str(a)}, {"video": str(b)}], instance=instance)
    frames = pxt.create_view("rv/frames", videos, iterator=frame_iterator(videos.video, fps=2))
    frames.add_computed_column(w=frames.frame.width)
    make_video(a, seconds=1.0, size=(32, 24))  # same path, new content
    frames._populate(instance)  # the view made again: a's frames are new ones, their column recomputed
    assert sorted(frames.select(frames.w).collect()["w"]) == [32, 32, 64, 64]
    b.unlink()
    frames.add_computed_column(h=frames.frame.height)  # the backfill reads frames of both videos
    heights = frames.select(frames.h, frames.h.errortype).collect()
    assert sorted(h for h in heights["h"] if h is not None) == [24, 24]
    assert [e for e in heights["h_errortype"] if e is not None] == ["not_found"] * 2
    assert evaluate._CURSORS == {}  # every video opened for frames was closed

    # frames of an MPEG-TS video (its seeks land late) read back, in order and not
    ts = make_video(tmp_path / "c.ts", seconds=4.0, fps=10)
    clips = pxt.create_table("rv/clips", {"video": pxt.Video})
    clips.insert([{"video": str(ts)}], instance=instance)
    tsf = pxt.create_view("rv/tsframes", clips, iterator=frame_iterator(clips.video, fps=2))
    got = tsf.select(tsf.frame, tsf.frame_attrs.index).collect().to_pandas()
    assert len(got) == 8 and all(abs(_level(img) - (10 * i) % 256) <= 3 for img, i in got.itertuples(index=False))
    assert tsf.where(tsf.frame.width > 10).count() == 8 and evaluate._CURSORS == {}
    last = tsf.order_by(tsf.pos, asc=False).limit(1).select(tsf.frame, tsf.frame_attrs.index).collect().to_pandas()
    assert abs(_level(last.iloc[0, 0]) - (10 * last.iloc[0, 1]) % 256) <= 3

    # a base column a view iterates over cannot be dropped; drop_dir(force=True) takes views with tables
    with pytest.raises(pxt.SpecError, match=r"view\(s\) \['rv/frames'\] make their rows from it"):
        videos.drop_column("video")
    pxt.drop_dir("rv", force=True)
    assert pxt.list_tables() == []


def test_document_splitting_details(pxt_home, instance, tmp_path):
    from pxt_assets.functions.document import iter_chunks

    md = tmp_path / "code.md"
    md.write_text("# Guide\n\nFirst para.\n\nSecond para\nspans two lines.\n\n```\n# not a heading\n```\n")
    chunks = list(iter_chunks(str(md), "heading,paragraph", metadata="heading,sourceline"))
    # as Pixeltable (mistune): a heading's text opens a chunk, lines of a paragraph are joined by a space,
    # code blocks are left out, Markdown has sourceline 0
    assert [(c["text"], c["sourceline"]) for c in chunks] == [
        ("Guide", 0), ("First para.", 0), ("Second para spans two lines.", 0)]
    assert all(c["heading"] == {"h1": "Guide"} for c in chunks)
    html = tmp_path / "p.html"
    html.write_text("<p>Intro text</p><h2>Sub</h2><p>Body.</p>")
    assert [c["text"] for c in iter_chunks(str(html), "paragraph")] == ["Intro text", "Sub", "Body."]
    pdf = make_text_pdf(tmp_path / "d.pdf", ["One. Two.", "Three."])
    # without 'page', a PDF's pages are one text (Pixeltable joins them with nothing between)
    assert [(c["text"], c["page"]) for c in iter_chunks(str(pdf), "sentence", metadata="page")] == [
        ("One. ", None), ("Two.Three.", None)]
    assert [(c["text"], c["page"]) for c in iter_chunks(str(pdf), "page,sentence", metadata="page")] == [
        ("One. ", 0), ("Two.", 0), ("Three.", 1)]


def test_a_view_has_its_base_tables_columns_and_takes_plain_columns(videos, instance, tmp_path):
    """As Pixeltable's views: `frames.video` and the base's other columns (computed ones too) are the view's,
    selectable, usable in where() and in the view's computed columns; `add_column` adds a plain column (None
    in every row, made and to be made); keyword iterator arguments; a catalog handle loaded again has it all."""
    a, b = videos._test_files
    videos.add_computed_column(duration=videos.video.get_duration())
    videos.insert([{"video": str(a), "title": "a"}], instance=instance)
    frames = pxt.create_view("vid/frames", videos, iterator=frame_iterator(video=videos.video, fps=1))
    assert frames.columns() == ["video", "title", "duration", "pos", "frame", "frame_attrs"]
    frames.add_column(note=pxt.String)
    frames.add_computed_column(label=frames.title)  # a view's computed column over a base column
    frames.add_computed_column(length=frames.video.get_duration())
    videos.insert([{"video": str(b), "title": "b"}], instance=instance)
    got = frames.select(frames.video, frames.title, frames.duration, frames.pos, frames.note, frames.label,
                        frames.length, url=frames.video.fileurl).collect().to_pandas().to_dict("records")
    assert [(r["title"], r["pos"], r["note"], r["label"]) for r in got] == [
        ("a", 0, None, "a"), ("a", 1, None, "a"), ("a", 2, None, "a"), ("b", 0, None, "b"), ("b", 1, None, "b")]
    assert {r["url"] for r in got} == {a.as_uri(), b.as_uri()}
    assert [round(r["duration"], 1) for r in got] == [3.0] * 3 + [2.0] * 2 == [round(r["length"], 1) for r in got]
    assert frames.where(frames.title == "b").count() == 2 and frames.where(frames.video == a.as_uri()).count() == 3
    # the view references the base's files, it does not own them: dropping the view leaves the videos
    again = pxt.get_table("vid/frames")
    assert again.columns() == [*frames.columns()] and "note" in again.columns()
    assert pxt.drop_table("vid/frames", instance=instance) == 0 and a.exists() and b.exists()
    # a base column named like an iterator column is the iterator's in the view
    docs = pxt.create_table("vid/docs", {"doc": pxt.Document, "text": pxt.String})
    chunks = pxt.create_view("vid/chunks", docs, iterator=document_splitter(document=docs.doc, separators=""))
    assert chunks.columns() == ["doc", "pos", "text"] and chunks.text.col_type == pxt.String


def test_create_view_raises_when_its_arguments_cannot_work_on_a_base_row(pxt_home, instance, tmp_path):
    """As Pixeltable's create_view: an iterator argument that cannot work on a base row (paragraphs of a PDF)
    raises with its message, and the view is not made, in the catalog or declared in code."""
    pdf = make_text_pdf(tmp_path / "d.pdf", ["One.", "Two."])
    pxt.create_dir("inv")
    for base in (pxt.create_table("inv/docs", {"doc": pxt.Document}), pxt.MediaTable("inv/code_docs",
                                                                                      {"doc": pxt.Document})):
        base.insert([{"doc": str(pdf)}], instance=instance)
        name = f"inv/paragraphs_of_{base.spec.name}"
        with pytest.raises(pxt.SpecError, match=r"Paragraph splitting is not currently supported for PDF"):
            pxt.create_view(name, base, iterator=document_splitter(base.doc, "paragraph"), instance=instance)
        assert name not in pxt.list_tables("inv") and base._views_to_run() == []
        base.insert([{"doc": str(pdf)}], instance=instance)  # no view rows made, no error
        assert base.count() == 2
