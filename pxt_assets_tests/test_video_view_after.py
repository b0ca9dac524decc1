"""A frame view defined after its videos are inserted (issue #28 item 2): create_view decodes the videos without
pixels (its rows need only the frames' attributes), and a column added to it then computes each row as its
frame comes out of one decoding pass, as the insert does for a view defined first. Same rows, attributes and
values as a view defined first; one GET per video; a video changed in place since falls back to seeking."""

from __future__ import annotations

import pytest

import pxt_assets as pxt
from pxt_assets import evaluate
from pxt_assets.functions.video import frame_iterator, iter_frames
from pxt_assets_tests.conftest import CountingHTTPServer
from pxt_assets_tests.mediagen import make_video


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    make_video(root / "a.mp4", seconds=3.0, fps=10, gop=10)
    make_video(root / "b.webm", seconds=2.0, fps=10, codec="libvpx-vp9", gop=5)
    server = CountingHTTPServer(root)
    yield server
    server.close()


@pytest.fixture
def cursors_opened(monkeypatch) -> list[str]:
    """The videos opened for seeking frames (the path a column on a view's existing rows took before)."""
    opened: list[str] = []
    real = evaluate._FrameCursor.__init__

    def counting(self, reader, video_uri):
        opened.append(video_uri)
        real(self, reader, video_uri)

    monkeypatch.setattr(evaluate._FrameCursor, "__init__", counting)
    return opened


@pytest.mark.parametrize("kwargs", [{"fps": 2}, {}], ids=["fps2", "every_frame"])
def test_a_view_defined_after_the_insert_matches_one_defined_before(pxt_home, instance, served, cursors_opened,
                                                                    kwargs):
    videos = pxt.create_table("videos", {"video": pxt.Video})
    first = pxt.create_view("first", videos, iterator=frame_iterator(videos.video, **kwargs))
    first.add_computed_column(thumb=first.frame.resize((16, 12)))
    videos.insert([{"video": served.url("a.mp4")}, {"video": served.url("b.webm")}], instance=instance)

    after = pxt.create_view("after", videos, iterator=frame_iterator(videos.video, **kwargs))
    assert after.count() == first.count() > 0
    opened_before = len(cursors_opened)
    after.add_computed_column(thumb=after.frame.resize((16, 12)))
    assert len(cursors_opened) == opened_before  # one decoding pass: no frame was sought in its video

    def rows(view):
        got = view.select(view.video, view.pos, view.frame_attrs, view.thumb).collect()
        return sorted((r["video"], r["pos"], str(r["frame_attrs"]), r["thumb"].tobytes()) for r in got)

    assert rows(after) == rows(first)
    assert served.requests["/a.mp4"] == 1 and served.requests["/b.webm"] == 1  # one GET per video


def test_create_view_makes_the_rows_without_pixels(tmp_path):
    """The frames a view's rows are made from, and their attributes, are the same with and without pixels."""
    videos = [make_video(tmp_path / "a.mp4", seconds=3.0, fps=10, gop=10),
              make_video(tmp_path / "b.webm", seconds=2.0, fps=10, codec="libvpx", gop=5),
              make_video(tmp_path / "c.webm", seconds=2.0, fps=10, codec="libvpx-vp9", gop=5)]
    for path in videos:
        for kwargs in ({}, {"fps": 1}, {"fps": 3.5}, {"num_frames": 7}, {"keyframes_only": True}):
            with_pixels = list(iter_frames(str(path), **kwargs))
            without = list(iter_frames(str(path), pixels=False, **kwargs))
            assert [i["frame_attrs"] for i in without] == [i["frame_attrs"] for i in with_pixels]
            assert all(i["frame"] is None for i in without) and with_pixels[0]["frame"] is not None


def test_a_video_changed_since_its_rows_were_made_is_read_as_before(pxt_home, instance, tmp_path, cursors_opened):
    """Frames whose video changed in place after create_view do not match the rows' references: those rows read
    their frames from the video as they always did (the video as it is now)."""
    path = make_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(64, 48))
    videos = pxt.create_table("videos", {"video": pxt.Video})
    videos.insert([{"video": str(path)}], instance=instance)
    frames = pxt.create_view("frames", videos, iterator=frame_iterator(videos.video, fps=2))
    assert frames.count() == 4
    make_video(tmp_path / "new.mp4", seconds=2.0, fps=10, size=(32, 24)).replace(path)
    frames.add_computed_column(w=frames.frame.width)
    assert sorted(frames.select(frames.w).collect()["w"]) == [32] * 4
    assert cursors_opened  # sought in the video, as before


def _decoded_attrs(path, kwargs):
    """The frames' attributes as the decoder gives them (what a view's rows held when create_view decoded)."""
    return [i["frame_attrs"] for i in iter_frames(str(path), **kwargs)]


@pytest.mark.parametrize("kwargs", [{"fps": 2}, {}, {"keyframes_only": True}, {"num_frames": 5}],
                         ids=["fps2", "every_frame", "keyframes", "num_frames"])
def test_rows_made_from_packets_read_the_decoders_attributes(pxt_home, instance, tmp_path, kwargs):
    """H.264 in MP4 and Matroska: create_view makes the rows from the containers' packets (nothing decoded: the
    batch waits for its frames' decoder-only attributes); a count does not decode; the first query reading
    frame_attrs, from any table object, fills them by one decoding pass, and they are the decoder's. VP9 in
    WebM is decoded when the rows are made, as before."""
    from pxt_assets import rowstore

    paths = [make_video(tmp_path / "a.mp4", seconds=3.0, fps=10, gop=10),
             make_video(tmp_path / "d.mkv", seconds=2.0, fps=25, gop=12),
             make_video(tmp_path / "c.webm", seconds=2.0, fps=10, codec="libvpx-vp9", gop=5)]
    videos = pxt.create_table("videos", {"video": pxt.Video})
    videos.insert([{"video": str(p)} for p in paths], instance=instance)
    frames = pxt.create_view("frames", videos, iterator=frame_iterator(videos.video, **kwargs))
    store = rowstore.for_settings(frames.settings)
    expected = {str(p): _decoded_attrs(p, kwargs) for p in paths}
    assert list(store.pending_values(frames.spec.slug).values()) == ["frame_attrs"]
    assert frames.count() == sum(len(v) for v in expected.values())
    assert frames.where(frames.pos == 0).count() == 3
    assert store.pending_values(frames.spec.slug)  # counting decoded nothing

    again = pxt.get_table("frames")  # another table object (as another process has): it fills them as well
    got = again.select(again.video, again.pos, again.frame_attrs).order_by(again.video).order_by(again.pos).collect()
    by_video: dict[str, list] = {}
    for r in got:
        by_video.setdefault(r["video"], []).append(r["frame_attrs"])
    assert by_video == expected
    assert all(a["pict_type"] is not None for v in by_video.values() for a in v)
    assert store.pending_values(frames.spec.slug) == {}


def test_a_column_reading_frame_attrs_added_later_reads_the_decoders_values(pxt_home, instance, tmp_path):
    """A column computed from frame_attrs of rows made from packets: the attributes are filled before it runs;
    a column reading the frames fills them in the same pass that decodes its frames."""
    from pxt_assets import rowstore

    path = make_video(tmp_path / "a.mp4", seconds=3.0, fps=10, gop=10)
    videos = pxt.create_table("videos", {"video": pxt.Video})
    videos.insert([{"video": str(path)}], instance=instance)
    expected = _decoded_attrs(path, {"fps": 4})

    frames = pxt.create_view("frames", videos, iterator=frame_iterator(videos.video, fps=4))
    frames.add_computed_column(kind=frames.frame_attrs.pict_type)
    assert frames.select(frames.kind).order_by(frames.pos).collect()["kind"] == [a["pict_type"] for a in expected]

    other = pxt.create_view("other", videos, iterator=frame_iterator(videos.video, fps=4))
    store = rowstore.for_settings(other.settings)
    assert store.pending_values(other.spec.slug)
    other.add_computed_column(w=other.frame.width)
    assert store.pending_values(other.spec.slug) == {}  # the column's decoding pass filled them
    got = other.select(other.frame_attrs).order_by(other.pos).collect()["frame_attrs"]
    assert list(got) == expected


def test_another_process_sees_the_rows_and_fills_the_attributes(pxt_home, instance, tmp_path):
    """Right after create_view, another process counts the rows (nothing decoded) and, reading frame_attrs,
    gets the decoder's values (it fills them); this process then reads them filled."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    from pxt_assets import rowstore

    path = make_video(tmp_path / "a.mp4", seconds=3.0, fps=10, gop=10)
    videos = pxt.create_table("videos", {"video": pxt.Video})
    videos.insert([{"video": str(path)}], instance=instance)
    frames = pxt.create_view("frames", videos, iterator=frame_iterator(videos.video, fps=2))
    store = rowstore.for_settings(frames.settings)
    assert store.pending_values(frames.spec.slug)
    code = ("import json, pxt_assets as pxt; f = pxt.get_table('frames'); n = f.count(); "
            "from pxt_assets import rowstore; s = rowstore.for_settings(f.settings); "
            "pending = bool(s.pending_values(f.spec.slug)); "
            "a = list(f.select(f.frame_attrs).order_by(f.pos).collect()['frame_attrs']); "
            "print(json.dumps([n, pending, a]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PXT_", "DAGSTER_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=pathlib.Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    n, pending_there, attrs = json.loads(done.stdout.strip().splitlines()[-1])
    expected = _decoded_attrs(path, {"fps": 2})
    assert n == len(expected) == 6 and pending_there  # counted before anything was decoded
    assert attrs == expected
    assert store.pending_values(frames.spec.slug) == {}
    assert list(frames.select(frames.frame_attrs).order_by(frames.pos).collect()["frame_attrs"]) == expected
