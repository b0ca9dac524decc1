"""Video functions (PyAV, whose wheels bundle FFmpeg): `t.video.get_metadata()`, `t.video.get_duration()`.

They take the local path of the video (media other than images are handed to functions as local files,
fetched through the file cache when remote), as Pixeltable's do.
"""

from __future__ import annotations

from typing import Any

from pxt_assets.functions.registry import ExpressionFunction, IteratorSpec, register
from pxt_assets.limits import check_pixels
from pxt_assets.media import Float, Json, Video


def _stream_info(stream: Any) -> dict[str, Any]:
    """A stream's metadata as Pixeltable's `StreamMetadata` (pixeltable/functions/util.py): streams other than
    audio and video have only their type."""
    if stream.type not in ("audio", "video"):
        return {"type": stream.type}
    ctx = stream.codec_context
    codec: dict[str, Any] = {"name": ctx.name, "codec_tag": ctx.codec_tag.encode("unicode-escape").decode("utf-8"),
                             "profile": ctx.profile}
    info: dict[str, Any] = {
        "type": stream.type, "duration": stream.duration,
        "time_base": float(stream.time_base) if stream.time_base is not None else None,
        "duration_seconds": (float(stream.duration * stream.time_base)
                             if stream.duration is not None and stream.time_base is not None else None),
        "frames": stream.frames, "metadata": dict(stream.metadata), "codec_context": codec,
    }
    if stream.type == "audio":
        codec["channels"] = int(ctx.channels) if ctx.channels is not None else None
    else:
        codec["pix_fmt"] = getattr(ctx, "pix_fmt", None)
        info.update(width=stream.width, height=stream.height,
                    **{k: float(getattr(stream, k)) if getattr(stream, k) is not None else None
                       for k in ("average_rate", "base_rate", "guessed_rate")})
    return info


def container_metadata(path: str) -> dict[str, Any]:
    """A media file's metadata as Pixeltable's `get_metadata()` gives it (its `ContainerMetadata`): bit_exact,
    bit_rate, size, the container's tags, and each stream's type, duration, time base, frames, tags, codec
    context (name, codec_tag, profile, and channels or pix_fmt), and a video's size and rates."""
    import av

    with av.open(str(path)) as container:
        return {
            "bit_exact": getattr(container, "bit_exact", False), "bit_rate": container.bit_rate,
            "size": container.size, "metadata": dict(container.metadata),
            "streams": [_stream_info(s) for s in container.streams],
        }


def check_media(path: str, kind: str) -> None:
    """Raise ValueError unless FFmpeg can open `path` and it has a `kind` ('video' / 'audio') stream whose
    first packet decodes."""
    import av

    try:
        with av.open(str(path)) as container:
            streams = container.streams.video if kind == "video" else container.streams.audio
            if not streams:
                raise ValueError(f"no {kind} stream in {path}")
            if kind == "video":  # before a frame is decoded: a 16,000 x 16,000 frame is 1.9 GB
                check_frame_size(streams[0], path)
            for frame in container.decode(streams[0]):
                break
            else:
                raise ValueError(f"no {kind} frame decodes in {path}")
    except av.error.FFmpegError as e:
        raise ValueError(f"not a readable {kind}: {path}: {e.strerror or e}") from None


def check_frame_size(stream: Any, path: str) -> None:
    """Raise ResourceLimitError if the video stream's frames (as its codec context declares them, nothing
    decoded) are over the pixel limit."""
    ctx = stream.codec_context
    check_pixels(ctx.width or 0, ctx.height or 0, f"a frame of video {path}")


def duration_of(path: str, kind: str) -> float | None:
    """The first `kind` stream's duration in seconds, else the container's."""
    import av

    with av.open(str(path)) as container:
        for s in container.streams:
            if s.type == kind and s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
        return container.duration / 1_000_000 if container.duration is not None else None


@register("video.get_metadata", applies_to=Video, returns=Json)
def get_metadata(video: str) -> dict[str, Any]:
    """The video's container and stream metadata, with Pixeltable's structure (see container_metadata)."""
    return container_metadata(video)


@register("video.get_duration", applies_to=Video, returns=Float)
def get_duration(video: str) -> float | None:
    """The duration of the first video stream, in seconds (the container's when the stream has none)."""
    return duration_of(video, "video")




# -- frame_iterator ------------------------------------------------------------------------------------------


def check_frame_args(fps: Any = None, num_frames: Any = None, keyframes_only: Any = False) -> None:
    """Pixeltable's checks (frame_iterator.validate), with its messages."""
    if int(fps is not None) + int(num_frames is not None) + int(bool(keyframes_only)) > 1:
        raise ValueError("frame_iterator: At most one of `fps`, `num_frames` or `keyframes_only` may be specified")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise ValueError(f"frame_iterator: `fps` must be a positive number, got {fps!r}")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1):
        raise ValueError(f"frame_iterator: `num_frames` must be an integer >= 1, got {num_frames!r}")


def iter_frames(video: str, *, fps: float | None = None, num_frames: int | None = None,
                keyframes_only: bool = False, pixels: bool = True, decode: bool = True) -> Any:
    """Yield {'frame': PIL image, 'frame_attrs': {...}} for the selected frames of `video`, one decoded frame
    at a time (nothing holds more than the current and the next frame).

    `pixels=False` (a view's rows whose frames are neither written nor read: create_view of a view without a
    destination): 'frame' is None and the decoder skips its deblocking filter, which changes pixels only;
    the frames chosen and their attributes are the same (about 20% less decoding on H.264).

    `decode=False` (implies pixels=False; a view's rows made by create_view): where the container's packets
    say which frames there are (H.264 / HEVC in MP4, MOV or Matroska, every packet timed, none discarded, the
    first a keyframe: one packet per frame, see _frames_from_packets), nothing is decoded: the frames are the
    packets in presentation order, the same frames chosen with the same `index`, `pts`, `time` and
    `key_frame`; the attributes only the decoder knows (`dts`, `pict_type`, `is_corrupt`,
    `interlaced_frame`) are None and the item has 'attrs_pending': True (they are filled by the view's next
    decoding pass; assets/view.py). Other videos are decoded as with pixels=False.

    - `fps`: frames closest to the times 0, 1/fps, 2/fps, ... (from the stream's start);
    - `num_frames`: that many frames, closest to the midpoints of equal slices of the duration;
    - `keyframes_only`: only keyframes (FFmpeg is asked to decode only them, skip_frame=NONKEY; a decoder
      that ignores it, as VP9's does, still yields only the frames marked key_frame);
    - none: every frame.
    """
    import av

    check_frame_args(fps, num_frames, keyframes_only)
    pixels = pixels and decode
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        check_frame_size(stream, video)
        demuxed = None
        if not decode:  # read in a container of its own: decoding, if it comes to that, starts at the start
            with av.open(str(video)) as probe:
                demuxed = _frames_from_packets(probe, probe.streams.video[0])
        if demuxed is not None:
            yield from _select(video, demuxed, stream, fps, num_frames, keyframes_only, False)
            return
        stream.thread_type = "AUTO"
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        if not pixels:
            stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}
        yield from _select(video, container.decode(stream), stream, fps, num_frames, keyframes_only, pixels)


class _Packet:
    """A frame as its packet gives it (see _frames_from_packets): what the selection reads of a frame."""

    __slots__ = ("pts", "duration", "key_frame")

    def __init__(self, pts: int, duration: int | None, key_frame: bool) -> None:
        self.pts, self.duration, self.key_frame = pts, duration, key_frame


#: codecs whose packets in MP4 / MOV / Matroska are one frame each (an access unit: a frame, or a field pair)
_ONE_FRAME_PER_PACKET = {"h264", "hevc"}
_CONTAINERS = ("mov", "mp4", "matroska")


def _frames_from_packets(container: Any, stream: Any) -> list[_Packet] | None:
    """The video's frames in presentation order from its packets alone (no decoding), when packets and frames
    are one to one: H.264 / HEVC in MP4, MOV or Matroska, every packet with a timestamp, none marked to be
    discarded (an edit list's leading frames, which the decoder drops), the first in decoding order a keyframe
    (a decoder drops frames before the first keyframe), no two at the same time. Else None (decode instead).
    The frames' pts, durations and keyframe flags are then the decoder's (asserted on H.264 in MP4 and
    Matroska in pxt_assets_tests/test_video_view_after.py)."""
    if stream.codec_context.name not in _ONE_FRAME_PER_PACKET:
        return None
    if not any(name in _CONTAINERS for name in (container.format.name or "").split(",")):
        return None
    import av

    frames: list[_Packet] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's last, empty packet
                continue
            if packet.pts is None or packet.is_discard or (not frames and not packet.is_keyframe):
                return None
            frames.append(_Packet(packet.pts, packet.duration, bool(packet.is_keyframe)))
    except av.error.FFmpegError:  # a damaged file: decoded as before (the frames before the damage, or an error)
        return None
    frames.sort(key=lambda f: f.pts)
    if not frames or any(a.pts == b.pts for a, b in zip(frames, frames[1:])):
        return None
    return frames


def _select(video: str, frames: Any, stream: Any, fps: float | None, num_frames: int | None,
            keyframes_only: bool, pixels: bool) -> Any:
    """iter_frames' choice of frames among `frames` (decoded frames, or _Packet's), in presentation order."""
    import PIL.Image

    tb = stream.time_base
    start = float((stream.start_time or 0) * tb)
    step = first = None
    if num_frames is not None:
        duration = duration_of(video, "video")
        if duration is None:
            raise ValueError(f"frame_iterator: the duration of {video} is unknown, so num_frames cannot be used")
        step = duration / num_frames
        first = start + step / 2
    elif fps is not None:
        step, first = 1.0 / fps, start
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    frames = iter(frames)
    if keyframes_only:  # skip_frame is a hint some decoders ignore (VP9 in WebM): each frame says what it is
        frames = (f for f in frames if f.key_frame)
    current = next(frames, None)
    pos = index = 0
    while current is not None:
        following = next(frames, None)
        t = float(current.pts * tb) if current.pts is not None else start + index / (rate or 1)
        emit = True
        if step is not None:
            if num_frames is not None and pos >= num_frames:
                break
            target = first + pos * step
            if following is not None and following.pts is not None:
                t_next = float(following.pts * tb)
                emit = not (t_next - target < target - t)  # the next frame is closer to the target
            else:
                end = t + (float(current.duration * tb) if current.duration else (1 / rate if rate else 0))
                emit = target < end - 1e-6
        if emit:
            frame_index = round((t - start) * rate) if keyframes_only and rate else index
            if isinstance(current, _Packet):
                yield {"frame": None, "attrs_pending": True, "frame_attrs": {
                    "index": frame_index, "pts": current.pts, "dts": None, "time": t, "is_corrupt": None,
                    "key_frame": current.key_frame, "pict_type": None, "interlaced_frame": None}}
            else:
                check_pixels(current.width, current.height, f"frame {index} of video {video}")  # a size change
                # to_ndarray + fromarray: faster than to_image()
                image = PIL.Image.fromarray(current.to_ndarray(format="rgb24")) if pixels else None
                yield {
                    "frame": image,
                    "frame_attrs": {
                        "index": frame_index, "pts": current.pts, "dts": current.dts, "time": t,
                        "is_corrupt": bool(current.is_corrupt), "key_frame": bool(current.key_frame),
                        "pict_type": int(current.pict_type),
                        "interlaced_frame": bool(current.interlaced_frame),
                    },
                }
            pos += 1
        elif step is not None and num_frames is None and following is None:
            break
        index += 1
        current = following


def _frame_outputs(**_: Any) -> dict[str, Any]:
    from pxt_assets.media import Image

    return {"frame": Image, "frame_attrs": Json}


def _no_direct_call(*args: Any, **kwargs: Any) -> Any:
    raise ValueError("an iterator makes a view (pxt.create_view(..., iterator=...)) or a column with a "
                     "destination; it has no value of its own in a query")


def _check_frame_call(video: Any, *, fps: Any = None, num_frames: Any = None, keyframes_only: Any = False) -> None:
    check_frame_args(fps, num_frames, keyframes_only)


register("video.frame_iterator", applies_to=None, returns=Json,
         iterator=IteratorSpec(Video, iter_frames, _frame_outputs))(_no_direct_call)

frame_iterator = ExpressionFunction(
    "video.frame_iterator", _check_frame_call,
    """frame_iterator(video, *, fps=None, num_frames=None, keyframes_only=False): the frames of a video, for
    `pxt.create_view('dir/frames', videos, iterator=frame_iterator(videos.video, fps=1))`. Columns: `pos`,
    `frame` (Image), `frame_attrs` {index, pts, dts, time, is_corrupt, key_frame, pict_type,
    interlaced_frame}. At most one of `fps` (frames closest to 0, 1/fps, 2/fps, ... seconds), `num_frames`
    (evenly spaced) and `keyframes_only` (only keyframes are decoded); none: every frame.""")


__all__ = ["get_metadata", "get_duration", "frame_iterator"]
