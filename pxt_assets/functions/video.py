"""Video functions (PyAV, whose wheels bundle FFmpeg): `t.video.get_metadata()`, `t.video.get_duration()`.

They take the local path of the video (media other than images are handed to functions as local files,
fetched through the file cache when remote), as Pixeltable's do.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pxt_assets.functions.registry import register
from pxt_assets.media import Float, Json, Video


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Fraction) else value


def _stream_info(stream: Any) -> dict[str, Any]:
    ctx = stream.codec_context
    info: dict[str, Any] = {
        "type": stream.type, "index": stream.index, "codec": ctx.name if ctx is not None else None,
        "time_base": str(stream.time_base) if stream.time_base is not None else None,
        "duration_seconds": (float(stream.duration * stream.time_base)
                             if stream.duration is not None and stream.time_base is not None else None),
        "frames": stream.frames, "metadata": dict(stream.metadata),
    }
    if stream.type == "video":
        info.update(width=ctx.width, height=ctx.height, pix_fmt=ctx.pix_fmt,
                    average_rate=_number(stream.average_rate), guessed_rate=_number(stream.guessed_rate))
    elif stream.type == "audio":
        info.update(sample_rate=ctx.sample_rate, channels=ctx.channels, layout=ctx.layout.name,
                    format=ctx.format.name if ctx.format is not None else None)
    return info


def container_metadata(path: str) -> dict[str, Any]:
    """What PyAV reads from a media file's container: format, size, bit rate, duration, tags, streams."""
    import av

    with av.open(str(path)) as container:
        return {
            "format": container.format.name, "size": container.size, "bit_rate": container.bit_rate,
            "duration_seconds": container.duration / 1_000_000 if container.duration is not None else None,
            "metadata": dict(container.metadata), "streams": [_stream_info(s) for s in container.streams],
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
            for frame in container.decode(streams[0]):
                break
            else:
                raise ValueError(f"no {kind} frame decodes in {path}")
    except av.error.FFmpegError as e:
        raise ValueError(f"not a readable {kind}: {path}: {e.strerror or e}") from None


def duration_of(path: str, kind: str) -> float | None:
    meta = container_metadata(path)
    for s in meta["streams"]:
        if s["type"] == kind and s["duration_seconds"] is not None:
            return s["duration_seconds"]
    return meta["duration_seconds"]


@register("video.get_metadata", applies_to=Video, returns=Json)
def get_metadata(video: str) -> dict[str, Any]:
    """The video's container and stream metadata (format, size, duration, codecs, width, height, rates)."""
    return container_metadata(video)


@register("video.get_duration", applies_to=Video, returns=Float)
def get_duration(video: str) -> float | None:
    """The duration of the first video stream, in seconds (the container's when the stream has none)."""
    return duration_of(video, "video")


__all__ = ["get_metadata", "get_duration"]
