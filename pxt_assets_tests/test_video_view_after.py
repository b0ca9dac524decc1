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
