"""Image functions: plain Python on PIL images, knowing nothing of Dagster or storage.

Each takes the decoded source image first, as Pixeltable's image UDFs do, and never mutates it: several
columns of one row share one decoded image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import PIL.Image

from pxt_assets.functions.registry import register
from pxt_assets.media import Image, Int, Json, String, to_rgb


def _size(size: Sequence[int]) -> tuple[int, int]:
    w, h = size
    return int(w), int(h)


@register("image.rotate", applies_to=Image, returns=Image)
def rotate(img: PIL.Image.Image, angle: float, expand: bool = True) -> PIL.Image.Image:
    """Rotate counter-clockwise by `angle` degrees (the canvas grows to fit, as Pixeltable does)."""
    return img.rotate(angle, expand=expand)


@register("image.transpose", applies_to=Image, returns=Image)
def transpose(img: PIL.Image.Image, method: int) -> PIL.Image.Image:
    """Flip or rotate by a PIL.Image.Transpose value (0 = FLIP_LEFT_RIGHT)."""
    return img.transpose(PIL.Image.Transpose(int(method)))


@register("image.resize", applies_to=Image, returns=Image)
def resize(img: PIL.Image.Image, size: Sequence[int]) -> PIL.Image.Image:
    """Resize to exactly `size` (width, height)."""
    return img.resize(_size(size))


@register("image.thumbnail", applies_to=Image, returns=Image)
def thumbnail(img: PIL.Image.Image, size: Sequence[int]) -> PIL.Image.Image:
    """Shrink to fit within `size`, keeping the aspect ratio (a copy: the source image is shared)."""
    w, h = _size(size)
    if img.mode.startswith("I;16"):  # Pillow's thumbnail cannot reduce 16-bit modes: the same size by resize
        scale = min(w / img.width, h / img.height, 1.0)
        return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    out = img.copy()
    out.thumbnail((w, h))
    return out


@register("image.crop", applies_to=Image, returns=Image)
def crop(img: PIL.Image.Image, box: Sequence[int]) -> PIL.Image.Image:
    """Crop to `box` (left, upper, right, lower)."""
    left, upper, right, lower = (int(v) for v in box)
    return img.crop((left, upper, right, lower))


@register("image.convert", applies_to=Image, returns=Image)
def convert(img: PIL.Image.Image, mode: str) -> PIL.Image.Image:
    """Convert to PIL mode `mode` ('L', 'RGB', 'RGBA', ...). LAB images go through sRGB (Pillow has no direct
    conversion from LAB)."""
    if img.mode == "LAB" and mode != "LAB":
        img = to_rgb(img)
    return img.convert(mode)


@register("image.width", applies_to=Image, returns=Int, is_property=True)
def width(img: PIL.Image.Image) -> int:
    return img.width


@register("image.height", applies_to=Image, returns=Int, is_property=True)
def height(img: PIL.Image.Image) -> int:
    return img.height


@register("image.mode", applies_to=Image, returns=String, is_property=True)
def mode(img: PIL.Image.Image) -> str:
    return img.mode


@register("image.get_metadata", applies_to=Image, returns=Json)
def get_metadata(img: PIL.Image.Image) -> dict[str, Any]:
    """The image's width, height, mode, bits per sample and file format, as Pixeltable's `get_metadata()`
    (`bits` None, and `format` None for an image turned by its EXIF orientation, as PIL gives them)."""
    return {"width": img.width, "height": img.height, "mode": img.mode, "bits": getattr(img, "bits", None),
            "format": img.format}
