"""Pixeltable's tests/test_audio.py, ported: audio get_metadata() and audio_splitter views (duration, overlap,
min_segment_duration, max_size, the argument checks). Pixeltable's FLAC files are megabytes; these are
generated with PyAV (60 s of noise: it does not compress, so sizes are realistic). The cases left out, and
why, are in docs/pixeltable.md."""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np
import pytest

import pxt_assets as pxt
from pxt_assets.functions.audio import audio_splitter
from pxt_assets_tests.mediagen import make_wav
from pxt_assets_tests.pixeltable._media_fixtures import Error, rows, view_errors


def make_flac(path: pathlib.Path, seconds: float = 60.0, rate: int = 44100) -> str:
    """A mono FLAC of low-level noise (PyAV), like Pixeltable's 60 s jfk_1961_0109_cityuponahill-excerpt.flac."""
    import av

    rng = np.random.default_rng(7)
    samples = (rng.normal(0, 600, int(seconds * rate))).clip(-32768, 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(samples), 4096):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 4096], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


@pytest.fixture
def flac(pxt_home, tmp_path) -> str:
    return make_flac(tmp_path / "jfk_1961_0109_cityuponahill-excerpt.flac")


@pytest.fixture
def audio_files(flac, tmp_path) -> list[str]:
    """Pixeltable's get_audio_files(): FLAC and WAV here."""
    return [flac, str(make_wav(tmp_path / "tone.wav", seconds=20.0, rate=44100))]


def _frame_count(path: str) -> int:
    import av

    with av.open(path) as container:
        return sum(f.samples for f in container.decode(audio=0))


def _assert_tiling(segments: list[dict], *, overlap: float) -> None:
    """Pixeltable's TestAudio.__assert_tiling: positive spans, strictly advancing starts, no gap."""
    assert len(segments) > 0
    assert all(seg["segment_end"] > seg["segment_start"] for seg in segments)
    assert all(segments[i + 1]["segment_start"] > segments[i]["segment_start"] for i in range(len(segments) - 1))
    assert all(segments[i + 1]["segment_start"] <= segments[i]["segment_end"] + 1e-3
               for i in range(len(segments) - 1))
    if overlap > 0.0:
        assert all(segments[i + 1]["segment_start"] < segments[i]["segment_end"] for i in range(len(segments) - 1))


def test_get_metadata(flac):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_get_metadata (this file's values; Pixeltable's
    flac has the same layout; without the typed Json paths)."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.add_computed_column(metadata=base_t.audio.get_metadata())
    base_t.insert([{"audio": flac}])
    size = os.path.getsize(flac)
    result = rows(base_t.where(base_t.metadata.size == size).select(base_t.metadata).collect())[0]["metadata"]
    assert set(result["metadata"]) == {"encoder"}  # Lavf's version, e.g. 'Lavf61.1.100'
    assert isinstance(result["bit_rate"], int)
    assert result == {
        "size": size,
        "streams": [
            {
                "type": "audio",
                "frames": 0,
                "duration": 2646000,
                "metadata": {},
                "time_base": 2.2675736961451248e-05,
                "codec_context": {
                    "name": "flac",
                    "profile": None,
                    "channels": 1,
                    "codec_tag": "\\x00\\x00\\x00\\x00",
                },
                "duration_seconds": 60.0,
            }
        ],
        "bit_rate": result["bit_rate"],
        "metadata": result["metadata"],
        "bit_exact": False,
    }


def test_audio_splitter_on_audio(audio_files):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_audio_splitter_on_audio (the base table's
    `audio` column is the view's: ordered and grouped by it)."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.insert([{"audio": p} for p in audio_files])
    audio_segment_view = pxt.create_view(
        "audio_segments",
        base_t,
        iterator=audio_splitter(audio=base_t.audio, duration=5.0, overlap=1.25, min_segment_duration=0.5),
    )
    results = rows(audio_segment_view.order_by(audio_segment_view.audio, audio_segment_view.segment_start).select(
        audio_segment_view.audio, audio_segment_view.segment_start, audio_segment_view.segment_end).collect())
    segments_by_file: dict[str, list[dict]] = {}
    for result in results:
        segments_by_file.setdefault(result["audio"], []).append(result)
    assert set(segments_by_file) == set(audio_files)
    for segments in segments_by_file.values():
        _assert_tiling(segments, overlap=1.25)


def test_audio_splitter_single_file(flac):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_audio_splitter_single_file."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.insert([{"audio": flac}])
    audio_segment_view = pxt.create_view(
        "audio_segments",
        base_t,
        iterator=audio_splitter(audio=base_t.audio, duration=5.0, overlap=0.0, min_segment_duration=0.0),
    )
    # a 60s file split into non-overlapping 5s segments yields 12 segments covering the whole file
    assert audio_segment_view.count() == 12
    results = rows(audio_segment_view.order_by(audio_segment_view.pos).collect())
    assert all(result["audio"] == flac for result in results)
    assert results[-1]["segment_end"] == 60
    assert all(math.floor(results[i]["segment_start"]) == i * 5.0 for i in range(len(results)))
    assert all(round(results[i]["segment_end"] - results[i]["segment_start"]) == 5.0
               for i in range(len(results) - 1))

    # 60s / 7s leaves a 4s trailing segment; min_segment_duration=5 drops it, so 8 segments end at 56 rather than 9
    drop_view = pxt.create_view(
        "audio_segments_drop",
        base_t,
        iterator=audio_splitter(audio=base_t.audio, duration=7.0, min_segment_duration=5.0),
    )
    assert drop_view.count() == 8
    drop_results = rows(drop_view.order_by(drop_view.pos).select(drop_view.segment_end).collect())
    assert math.floor(drop_results[-1]["segment_end"]) == 56


def test_audio_splitter_overlap_smaller_than_packet(flac):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_audio_splitter_overlap_smaller_than_packet
    (FLAC packets of 4096 samples: 0.093 s)."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.insert([{"audio": flac}])
    view = pxt.create_view(
        "audio_segments", base_t, iterator=audio_splitter(audio=base_t.audio, duration=1.0, overlap=0.05))
    results = rows(view.order_by(view.pos).select(view.segment_start, view.segment_end).collect())
    assert len(results) > 1
    # consecutive segments overlap in time despite the requested overlap being smaller than one packet
    assert all(results[i + 1]["segment_start"] < results[i]["segment_end"] for i in range(len(results) - 1))


def test_audio_splitter_max_size(audio_files):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_audio_splitter_max_size."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.insert([{"audio": p} for p in audio_files])

    max_size = 128 * 1024
    view = pxt.create_view("audio_segments", base_t, iterator=audio_splitter(audio=base_t.audio, max_size=max_size))
    results = rows(view.order_by(view.audio, view.pos).select(
        view.audio, view.segment_start, view.segment_end, path=view.audio_segment.localpath).collect())
    # every emitted segment stays within the byte budget
    assert all(os.path.getsize(r["path"]) <= max_size for r in results)
    # every segment spans a positive amount of time
    assert all(r["segment_end"] > r["segment_start"] for r in results)
    # each source produces more than one segment for this budget
    assert all(sum(1 for r in results if r["audio"] == src) > 1 for src in audio_files)
    # with no overlap, the segments together cover each source exactly: no audio is lost or duplicated
    assert all(
        sum(_frame_count(r["path"]) for r in results if r["audio"] == src) == _frame_count(src)
        for src in audio_files
    )


def test_audio_splitter_max_size_overlap(flac):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_audio_splitter_max_size_overlap."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.insert([{"audio": flac}])

    max_size = 128 * 1024
    view = pxt.create_view(
        "audio_segments", base_t, iterator=audio_splitter(audio=base_t.audio, max_size=max_size, overlap=0.5))
    results = rows(view.order_by(view.pos)
                   .select(view.segment_start, view.segment_end, path=view.audio_segment.localpath).collect())
    assert all(os.path.getsize(r["path"]) <= max_size for r in results)
    # consecutive segments overlap in time
    assert all(results[i + 1]["segment_start"] < results[i]["segment_end"] for i in range(len(results) - 1))
    # overlap means the segments together cover more audio than the source
    total_frames = sum(_frame_count(r["path"]) for r in results)
    assert total_frames > _frame_count(flac)


def test_audio_splitter_max_size_errors(flac):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_audio_splitter_max_size_errors (the first
    case; the overlap case is left out: ours keeps at most half a segment of overlap instead of failing). A
    max_size too small for one packet is found while the view's rows are made: create_view raises, and the
    view is not created. A base row inserted later is kept as one view row in error (ours: a bad file never
    stops an insert), with that message."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.insert([{"audio": flac}])

    # max_size too small to hold even a single packet
    with pytest.raises(Error, match=r"too small to hold a single packet"):
        _ = pxt.create_view(
            "audio_segments_tiny", base_t, iterator=audio_splitter(audio=base_t.audio, max_size=1024))
    assert pxt.list_tables() == ["audio_tbl"]

    empty = pxt.create_table("audio_tbl2", {"audio": pxt.Audio})
    tiny = pxt.create_view("audio_segments_tiny", empty, iterator=audio_splitter(audio=empty.audio, max_size=1024))
    empty.insert([{"audio": flac}])
    (message,) = view_errors(tiny, "audio_segment")
    assert "too small to hold a single packet" in message
    assert tiny.where(tiny.audio_segment.errortype == "invalid").count() == 1


def test_create_audio_splitter(flac):
    """Ported from pixeltable tests/test_audio.py::TestAudio::test_create_audio_splitter (without the silence
    arguments, min_silence_len and silence_thresh: silence-aware splitting is not ours)."""
    base_t = pxt.create_table("audio_tbl", {"audio": pxt.Audio})
    base_t.insert([{"audio": flac}])
    with pytest.raises(Error, match=r"`duration` must be a positive number"):
        _ = pxt.create_view("audio_segments", base_t,
                            iterator=audio_splitter(audio=base_t.audio, duration=-1, overlap=1, min_segment_duration=1))

    with pytest.raises(Error, match=r"`duration` must be at least `min_segment_duration`"):
        _ = pxt.create_view("audio_segments", base_t,
                            iterator=audio_splitter(audio=base_t.audio, duration=1, overlap=0, min_segment_duration=2))

    with pytest.raises(Error, match=r"`overlap` must be strictly less than `duration`"):
        _ = pxt.create_view("audio_segments", base_t,
                            iterator=audio_splitter(audio=base_t.audio, duration=1, overlap=1, min_segment_duration=0))

    with pytest.raises(Error, match=r"`overlap` must be non-negative"):
        _ = pxt.create_view("audio_segments", base_t,
                            iterator=audio_splitter(audio=base_t.audio, duration=5.0, overlap=-1.0))

    with pytest.raises(Error, match=r"`min_segment_duration` must be non-negative"):
        _ = pxt.create_view("audio_segments", base_t,
                            iterator=audio_splitter(audio=base_t.audio, duration=5.0, min_segment_duration=-1.0))

    with pytest.raises(Error, match=r"Exactly one of `duration` or `max_size`"):
        _ = pxt.create_view("audio_segments", base_t, iterator=audio_splitter(audio=base_t.audio))

    with pytest.raises(Error, match=r"Exactly one of `duration` or `max_size`"):
        _ = pxt.create_view("audio_segments", base_t,
                            iterator=audio_splitter(audio=base_t.audio, duration=5.0, max_size=1024 * 1024))

    with pytest.raises(Error, match=r"`max_size` must be a positive number of bytes"):
        _ = pxt.create_view("audio_segments", base_t, iterator=audio_splitter(audio=base_t.audio, max_size=0))
