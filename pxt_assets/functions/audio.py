"""Audio functions (PyAV): `t.audio.get_metadata()`, `t.audio.get_duration()`."""

from __future__ import annotations

from typing import Any

from pxt_assets.functions.registry import register
from pxt_assets.functions.video import container_metadata, duration_of
from pxt_assets.media import Audio, Float, Json


@register("audio.get_metadata", applies_to=Audio, returns=Json)
def get_metadata(audio: str) -> dict[str, Any]:
    """The audio file's container and stream metadata (format, duration, codec, sample rate, channels)."""
    return container_metadata(audio)


@register("audio.get_duration", applies_to=Audio, returns=Float)
def get_duration(audio: str) -> float | None:
    """The duration of the first audio stream, in seconds."""
    return duration_of(audio, "audio")


__all__ = ["get_metadata", "get_duration"]
