"""Audio functions (PyAV): `t.audio.get_metadata()`, `t.audio.get_duration()`."""

from __future__ import annotations

from typing import Any

from pxt_assets.functions.registry import ExpressionFunction, IteratorArgumentError, IteratorSpec, register
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


def check_splitter_args(duration: Any = None, max_size: Any = None, overlap: Any = 0.0,
                        min_segment_duration: Any = 0.0) -> None:
    """Pixeltable's checks (pixeltable/functions/audio.py, audio_splitter.validate), with its messages."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if (duration is None) == (max_size is None):
        raise ValueError("audio_splitter: Exactly one of `duration` or `max_size` must be specified")
    if overlap is not None and (not number(overlap) or overlap < 0):
        raise ValueError("audio_splitter: `overlap` must be non-negative")
    if min_segment_duration is not None and (not number(min_segment_duration) or min_segment_duration < 0):
        raise ValueError("audio_splitter: `min_segment_duration` must be non-negative")
    if duration is not None:
        if not number(duration) or duration <= 0:
            raise ValueError("audio_splitter: `duration` must be a positive number")
        if min_segment_duration is not None and duration < min_segment_duration:
            raise ValueError("audio_splitter: `duration` must be at least `min_segment_duration`")
        if overlap is not None and overlap >= duration:
            raise ValueError("audio_splitter: `overlap` must be strictly less than `duration`")
    elif not isinstance(max_size, int) or isinstance(max_size, bool) or max_size <= 0:
        raise ValueError("audio_splitter: `max_size` must be a positive number of bytes")


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

    check_splitter_args(duration, max_size, overlap, min_segment_duration)
    suffix = pathlib.Path(str(audio)).suffix or ".mka"
    with av.open(str(audio)) as container:
        stream = container.streams.audio[0]
        tb = stream.time_base

        def seconds(pts: int) -> float:
            return float(pts * tb)

        def write(packets: list[Any], probe: bool = False) -> dict[str, Any]:
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
            if probe:
                return {"audio_segment": path}
            if max_size is not None and os.path.getsize(path) > max_size:
                os.unlink(path)
                if len(packets) == 1:
                    raise IteratorArgumentError(f"audio_splitter: `max_size` ({max_size} bytes) is too small to "
                                                f"hold a single packet of audio file '{audio}'")
                raise ValueError(f"audio_splitter: a segment of {len(packets)} packets of '{audio}' is over "
                                 f"`max_size` ({max_size} bytes) with its container's overhead")
            last = packets[-1]
            return {"segment_start": seconds(packets[0].pts),
                    "segment_end": seconds(last.pts + (last.duration or 0)), "audio_segment": path}

        def length(packets: list[Any]) -> float:
            return seconds(packets[-1].pts + (packets[-1].duration or 0) - packets[0].pts)

        overlap_pts = overlap / float(tb)
        budget = None
        overhead = 0  # the container's own bytes in a one-packet file (FLAC's header and padding: 8 KB)
        if max_size is not None:
            # room for the container: its header, and an index entry per packet (MP4's sample tables)
            def budget(n_packets: int) -> int:
                return max_size - overhead - min(1024, max_size // 8) - 16 * n_packets
        segment: list[Any] = []
        held: list[Any] | None = None  # the previous segment, written once we know the next is not a short tail
        size = 0
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            if budget is not None and not overhead:
                probe = write([packet], probe=True)["audio_segment"]
                overhead = max(1, os.path.getsize(probe) - packet.size)
                os.unlink(probe)
            full = bool(segment) and (
                (budget is not None and size + packet.size > budget(len(segment) + 1))
                or (duration is not None and seconds(packet.pts - segment[0].pts) >= duration))
            if full:
                if held is not None:
                    yield write(held)
                held = segment
                end = segment[-1].pts + (segment[-1].duration or 0)
                # a packet that ends inside the overlap is in it (an overlap shorter than a packet is one packet)
                segment = [p for p in segment if p.pts + (p.duration or 0) > end - overlap_pts] if overlap else []
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
    check_splitter_args(duration, max_size, overlap, min_segment_duration)


register("audio.audio_splitter", applies_to=None, returns=Json,
         iterator=IteratorSpec(Audio, iter_segments, _segment_outputs))(_no_direct_call)

audio_splitter = ExpressionFunction(
    "audio.audio_splitter", _check_splitter_call,
    """audio_splitter(audio, *, duration=None, max_size=None, overlap=0.0, min_segment_duration=0.0): segments
    of an audio file, for `pxt.create_view('dir/segments', t, iterator=audio_splitter(t.audio, duration=30.0))`.
    Columns: `pos`, `segment_start`, `segment_end` (seconds), `audio_segment` (a stored Audio file: a stream
    copy in the source's container). Segments are `duration` seconds or at most `max_size` bytes (exactly one
    of the two, as in Pixeltable; a `max_size` too small for one packet is the row's error), overlapping by
    `overlap` seconds. A last segment shorter than `min_segment_duration` is dropped; one too
    short to open (a single packet) joins the segment before it.""")


__all__ = ["get_metadata", "get_duration", "audio_splitter"]
