"""Audio functions (PyAV): `t.audio.get_metadata()`, `t.audio.get_duration()`."""

from __future__ import annotations

from typing import Any

from pxt_assets.functions.registry import ExpressionFunction, IteratorSpec, register
from pxt_assets.functions.video import _no_direct_call, container_metadata, duration_of
from pxt_assets.media import Audio, Float, Json


@register("audio.get_metadata", applies_to=Audio, returns=Json)
def get_metadata(audio: str) -> dict[str, Any]:
    """The audio file's container and stream metadata, with Pixeltable's structure (see video.container_metadata)."""
    return container_metadata(audio)


@register("audio.get_duration", applies_to=Audio, returns=Float)
def get_duration(audio: str) -> float | None:
    """The duration of the first audio stream, in seconds."""
    return duration_of(audio, "audio")




# -- audio_splitter ------------------------------------------------------------------------------------------

#: a tail shorter than this (or of a single packet) is merged into the segment before it: FFmpeg cannot always
#: open a one-packet file (Pixeltable's default min_segment_duration=0 emits such tails)
MIN_TAIL_S = 0.1
#: segment length when neither duration nor max_size is given
DEFAULT_DURATION_S = 30.0


def check_splitter_args(duration: Any = None, max_size: Any = None, overlap: Any = 0.0,
                        min_segment_duration: Any = 0.0) -> None:
    if (duration is None) == (max_size is None):
        raise ValueError("audio_splitter: give exactly one of duration (seconds) or max_size (bytes)")
    if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration <= 0):
        raise ValueError(f"audio_splitter: duration must be a positive number of seconds, got {duration!r}")
    if max_size is not None and (not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1024):
        raise ValueError(f"audio_splitter: max_size must be an integer number of bytes >= 1024, got {max_size!r}")
    if not isinstance(overlap, (int, float)) or overlap < 0 or (duration is not None and overlap >= duration):
        raise ValueError(f"audio_splitter: overlap must be >= 0 and shorter than duration, got {overlap!r}")
    if not isinstance(min_segment_duration, (int, float)) or min_segment_duration < 0:
        raise ValueError(f"audio_splitter: min_segment_duration must be >= 0, got {min_segment_duration!r}")


def iter_segments(audio: str, *, duration: float | None = None, max_size: int | None = None,
                  overlap: float = 0.0, min_segment_duration: float = 0.0, folder: str | None = None) -> Any:
    """Yield {'segment_start', 'segment_end', 'audio_segment': path of a temporary file} per segment: a stream
    copy of the source's packets (no re-encoding) in a file of the source's container format. Segments are
    `duration` seconds (a packet more at most) or at most `max_size` bytes of packets, overlapping by
    `overlap` seconds. A last segment shorter than `min_segment_duration` is dropped; one too short to open
    reliably (one packet, or under 0.1 s) joins the segment before it. The caller deletes each file."""
    import os
    import pathlib

    import av

    from pxt_assets import fsutil

    if duration is None and max_size is None:
        duration = DEFAULT_DURATION_S
    check_splitter_args(duration, max_size, overlap, min_segment_duration)
    suffix = pathlib.Path(str(audio)).suffix or ".mka"
    with av.open(str(audio)) as container:
        stream = container.streams.audio[0]
        tb = stream.time_base

        def seconds(pts: int) -> float:
            return float(pts * tb)

        def write(packets: list[Any]) -> dict[str, Any]:
            path = str(fsutil.scratch_file(suffix=suffix, prefix="pxt-segment-", folder=folder))
            try:
                with av.open(path, "w") as out:
                    out_stream = out.add_stream_from_template(stream)
                    base = packets[0].pts
                    for p in packets:
                        p.pts -= base
                        if p.dts is not None:
                            p.dts -= base
                        p.stream = out_stream
                        out.mux(p)
                        p.pts += base  # a packet shared with the next (overlapping) segment keeps its time
                        if p.dts is not None:
                            p.dts += base
            except Exception:
                os.unlink(path)
                raise
            last = packets[-1]
            return {"segment_start": seconds(packets[0].pts),
                    "segment_end": seconds(last.pts + (last.duration or 0)), "audio_segment": path}

        def length(packets: list[Any]) -> float:
            return seconds(packets[-1].pts + (packets[-1].duration or 0) - packets[0].pts)

        overlap_pts = overlap / float(tb)
        budget = None
        if max_size is not None:
            # room for the container: a header, and an index entry per packet (MP4's sample tables)
            def budget(n_packets: int) -> int:
                return max_size - min(1024, max_size // 8) - 16 * n_packets
        segment: list[Any] = []
        held: list[Any] | None = None  # the previous segment, written once we know the next is not a short tail
        size = 0
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            full = bool(segment) and (
                (budget is not None and size + packet.size > budget(len(segment) + 1))
                or (duration is not None and seconds(packet.pts - segment[0].pts) >= duration))
            if full:
                if held is not None:
                    yield write(held)
                held = segment
                end = segment[-1].pts + (segment[-1].duration or 0)
                segment = [p for p in segment if p.pts >= end - overlap_pts] if overlap else []
                if budget is not None:  # the overlap may take at most half a segment: segments must advance
                    while segment and sum(p.size for p in segment) > budget(len(segment)) // 2:
                        segment.pop(0)
                size = sum(p.size for p in segment)
            segment.append(packet)
            size += packet.size
        tail = segment if segment and (held is None or segment[-1] is not held[-1]) else []
        if tail and held is not None:
            fresh = [p for p in tail if p.pts > held[-1].pts]  # the part not already in `held` (overlap)
            if not fresh:
                tail = []
            elif length(tail) < min_segment_duration:
                tail = []
            elif len(fresh) < 2 or length(fresh) < MIN_TAIL_S:
                merged = held + fresh
                if budget is None or sum(p.size for p in merged) <= budget(len(merged)):
                    held, tail = merged, []
        if held is not None:
            yield write(held)
        if tail and (held is not None or length(tail) >= min_segment_duration or min_segment_duration == 0):
            yield write(tail)


def _segment_outputs(**_: Any) -> dict[str, Any]:
    return {"segment_start": Float, "segment_end": Float, "audio_segment": Audio}


def _check_splitter_call(audio: Any, *, duration: Any = None, max_size: Any = None, overlap: Any = 0.0,
                         min_segment_duration: Any = 0.0) -> None:
    check_splitter_args(DEFAULT_DURATION_S if duration is None and max_size is None else duration, max_size,
                        overlap, min_segment_duration)


register("audio.audio_splitter", applies_to=None, returns=Json,
         iterator=IteratorSpec(Audio, iter_segments, _segment_outputs))(_no_direct_call)

audio_splitter = ExpressionFunction(
    "audio.audio_splitter", _check_splitter_call,
    """audio_splitter(audio, *, duration=None, max_size=None, overlap=0.0, min_segment_duration=0.0): segments
    of an audio file, for `pxt.create_view('dir/segments', t, iterator=audio_splitter(t.audio, duration=30.0))`.
    Columns: `pos`, `segment_start`, `segment_end` (seconds), `audio_segment` (a stored Audio file: a stream
    copy in the source's container). Segments are `duration` seconds (default 30) or at most `max_size` bytes,
    overlapping by `overlap` seconds. A last segment shorter than `min_segment_duration` is dropped; one too
    short to open (a single packet) joins the segment before it.""")


__all__ = ["get_metadata", "get_duration", "audio_splitter"]
