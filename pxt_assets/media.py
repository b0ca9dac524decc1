"""Column types, and how a stored media URI becomes a local file to read.

A media value is stored as a URI (its `.fileurl`). Reading it goes through `MediaReader`: local files are
read in place; remote ones (http, and cloud stores) through the shared file cache, pinned while read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pxt_assets import stores
from pxt_assets.cache import FileCache, Pin
from pxt_assets.exceptions import ErrorCode, RequestError
from pxt_assets.limits import (
    DECODE_BUDGET,
    Reservation,
    ResourceLimitError,
    check_pixels,
    decoded_bytes,
    max_image_pixels,
)
from pxt_assets.redaction import redact


@dataclass(frozen=True)
class ColumnType:
    """A column's type. Media types hold files; the others hold plain values.

    Nullability as Pixeltable 0.7.x has it in a schema: a bare type (`pxt.Int`) is nullable, as are
    `pxt.Int | None` and `Optional[pxt.Int]`; `pxt.Required[pxt.Int]` is not (an insert must give it a
    value). Types compare equal whatever their nullability (`pxt.Required[pxt.Int] == pxt.Int`), as the
    expressions' type checks want; `nullable` says which it is."""

    name: str
    is_media: bool = False
    python_type: type | None = None
    nullable: bool = field(default=True, compare=False)

    def copy(self, nullable: bool) -> ColumnType:
        return self if nullable == self.nullable else dataclasses.replace(self, nullable=nullable)

    def __or__(self, other: Any) -> ColumnType:
        if other is None or other is type(None):
            return self.copy(nullable=True)
        return NotImplemented

    def __ror__(self, other: Any) -> ColumnType:
        return self.__or__(other)

    def __repr__(self) -> str:
        return f"pxt.{self.name}" if self.nullable else f"pxt.Required[pxt.{self.name}]"


Image = ColumnType("Image", is_media=True)
Video = ColumnType("Video", is_media=True)
Audio = ColumnType("Audio", is_media=True)
Document = ColumnType("Document", is_media=True)
String = ColumnType("String", python_type=str)
Int = ColumnType("Int", python_type=int)
Float = ColumnType("Float", python_type=float)
Bool = ColumnType("Bool", python_type=bool)
Json = ColumnType("Json")

TYPES: dict[str, ColumnType] = {t.name: t for t in (Image, Video, Audio, Document, String, Int, Float, Bool, Json)}


_PXT_TYPE_FOR = {"builtins.str": "pxt.String", "builtins.int": "pxt.Int", "builtins.float": "pxt.Float",
                 "builtins.bool": "pxt.Bool", "builtins.list": "pxt.Json", "builtins.dict": "pxt.Json",
                 "PIL.Image.Image": "pxt.Image"}


class Required:
    """`pxt.Required[pxt.Int]`: a column every inserted row must give a value (Pixeltable's `Required`)."""

    def __class_getitem__(cls, t: Any) -> ColumnType:
        return column_type(t, "Required[...]").copy(nullable=False)


def column_type(t: Any, what: str = "column") -> ColumnType:
    """A schema's type form as a ColumnType: `pxt.Int` (nullable), `pxt.Int | None` and `Optional[pxt.Int]`
    (nullable), `pxt.Required[pxt.Int]` (not). Anything else is a pxt.RequestError (INVALID_TYPE) naming
    `what` (the column)."""
    import types
    import typing

    if isinstance(t, ColumnType):
        return t
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = typing.get_args(t)
        rest = [a for a in args if a is not type(None)]
        if len(args) == 2 and len(rest) == 1 and isinstance(rest[0], ColumnType):
            return rest[0].copy(nullable=True)
    suggestion = _PXT_TYPE_FOR.get(f"{getattr(t, '__module__', '')}.{getattr(t, '__qualname__', '')}")
    if suggestion is not None:  # Pixeltable's message for a builtin type
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        raise RequestError(ErrorCode.INVALID_TYPE, f"{what}: Standard Python type `{name}` cannot be used here; use "
                                                   f"`{suggestion}` instead")
    raise RequestError(ErrorCode.INVALID_TYPE, redact(
        f"{what}: expected a type such as pxt.Image, pxt.Int | None or pxt.Required[pxt.Int], got {t!r}"))


def type_named(name: str) -> ColumnType:
    """The ColumnType called `name` ('Image', 'pxt.Image', ...); a YAML schema's forms too: 'Int | None'
    (nullable, as 'Int' is) and 'Required[Int]' / 'pxt.Required[pxt.Int]' (not nullable)."""
    key = name.strip().removeprefix("pxt.")
    required = re.fullmatch(r"Required\[\s*(?:pxt\.)?(\w+)\s*\]", key)
    if required is not None:
        return type_named(required.group(1)).copy(nullable=False)
    optional = re.fullmatch(r"(?:pxt\.)?(\w+)\s*\|\s*None|None\s*\|\s*(?:pxt\.)?(\w+)", key)
    if optional is not None:
        key = optional.group(1) or optional.group(2)
    if key not in TYPES:
        raise ValueError(f"unknown column type {name!r}; known: {', '.join(TYPES)} (and 'Required[Int]', "
                         "'Int | None')")
    return TYPES[key]


def suffix_of(uri: str) -> str:
    """The file extension of a URI's path (query string ignored), e.g. '.jpg', or ''."""
    if "://" in uri:
        scheme, _, rest = uri.partition("://")
        if "?" in uri or "#" in uri or ";" in uri or not (scheme.isalnum() and scheme.isascii()
                                                          and scheme[0].isalpha()):
            import urllib.parse

            path = urllib.parse.urlparse(uri).path
        else:  # (called several times a row: no URL parse for the plain names we write)
            slash = rest.find("/")
            path = rest[slash:] if slash >= 0 else ""
    else:
        path = uri
    name = next((part for part in reversed(path.split("/")) if part not in ("", ".")), "")
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot < len(name) - 1 else ""
    return suffix.lower() if 1 < len(suffix) <= 6 else ""


# How each Pillow mode is stored: (format, extension, mode to convert to first or None). JPEG for photographs
# (it holds L, RGB, CMYK and YCbCr natively); PNG where JPEG would lose data (bilevel, alpha, palettes,
# 16-bit); TIFF for what neither holds exactly (32-bit integer, float, LAB); modes no format stores are
# converted to the nearest one that is (premultiplied alpha, HSV, padding bytes).
_STORED_AS: dict[str, tuple[str, str, str | None]] = {
    "L": ("JPEG", ".jpg", None), "RGB": ("JPEG", ".jpg", None), "CMYK": ("JPEG", ".jpg", None),
    "YCbCr": ("JPEG", ".jpg", None), "RGBX": ("JPEG", ".jpg", "RGB"), "HSV": ("JPEG", ".jpg", "RGB"),
    "1": ("PNG", ".png", None), "LA": ("PNG", ".png", None), "P": ("PNG", ".png", None),
    "RGBA": ("PNG", ".png", None), "I;16": ("PNG", ".png", None), "I;16B": ("PNG", ".png", None),
    "PA": ("PNG", ".png", "RGBA"), "La": ("PNG", ".png", "LA"), "RGBa": ("PNG", ".png", "RGBA"),
    "I;16L": ("PNG", ".png", "I;16"), "I": ("TIFF", ".tiff", None), "F": ("TIFF", ".tiff", None),
    "LAB": ("TIFF", ".tiff", None),
}
_FORMAT_NAMES = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "jpg": ("JPEG", ".jpg"),
                 "webp": ("WEBP", ".webp"), "tiff": ("TIFF", ".tiff")}


def storable(img: Any, fmt: str | None = None) -> tuple[str, str, Any]:
    """(Pillow format, extension, image to save) for storing `img` in a format that holds its mode: `fmt`
    ('png', 'jpeg', 'webp', 'tiff') when it can, else the mode's own choice (see _STORED_AS)."""
    fallback = _STORED_AS.get(img.mode, ("PNG", ".png", "RGBA" if "A" in img.mode else "RGB"))
    if fmt:
        name, ext = _FORMAT_NAMES.get(fmt.lower(), fallback[:2])
        if name == "JPEG" and img.mode not in ("L", "RGB", "CMYK", "YCbCr"):
            return name, ext, img.convert("RGB")
        if name == "PNG" and img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"):
            return (*fallback[:2], img.convert(fallback[2]) if fallback[2] else img)
        return name, ext, img
    name, ext, convert = fallback
    return name, ext, img.convert(convert) if convert else img


def to_rgb(img: Any) -> Any:
    """An RGB view of any mode, for display and for conversions Pillow lacks (LAB goes through sRGB)."""
    if img.mode == "RGB":
        return img
    if img.mode == "LAB":
        from PIL import ImageCms

        to_srgb = ImageCms.buildTransformFromOpenProfiles(ImageCms.createProfile("LAB"),
                                                          ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(img, to_srgb)
    return img.convert("RGB")


def decoded(img: Any) -> Any:
    """A just-opened image as browsers show it: the first frame of an animation, EXIF orientation applied."""
    import PIL.ImageOps

    img.load()
    if img.getexif().get(0x0112, 1) not in (1, None):  # Orientation
        return PIL.ImageOps.exif_transpose(img)
    return img


class ImageDecodeError(Exception):
    """A file that is not a readable image; `kind` is decode_error. The message names the file; `why` is
    the decoder's reason alone."""

    kind = "decode_error"

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"cannot decode {what}: {why}")
        self.why = why


def decoder_failure(exc: BaseException) -> str:
    """What a decoder's exception means, in words (Pillow's IndexError on a PNG without IDAT says only
    'list index out of range')."""
    if isinstance(exc, (IndexError, KeyError)):
        return "it has no image data (truncated, or a PNG without an IDAT chunk)"
    import PIL

    if isinstance(exc, PIL.UnidentifiedImageError):  # Pillow's text repeats the path the message already names
        return "cannot identify image file (not an image format Pillow reads)"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_image_header(source: Any, what: str) -> Any:
    """`source` (a path or a binary file) opened lazily, nothing decoded: its size checked against the pixel
    limit (ResourceLimitError), and any failure to read the header an ImageDecodeError naming `what`."""
    import PIL.Image

    limit = max_image_pixels()
    if PIL.Image.MAX_IMAGE_PIXELS is not None and limit > PIL.Image.MAX_IMAGE_PIXELS:
        PIL.Image.MAX_IMAGE_PIXELS = limit  # max_image_pixels decides: Pillow's own bomb check must not refuse first
    try:
        img = PIL.Image.open(source)
    except PIL.Image.DecompressionBombError as e:
        raise ResourceLimitError(f"{what} is too large to decode: {e} (the max_image_pixels setting)") from None
    except Exception as e:  # noqa: BLE001 - whatever the decoder says, the row's error names the file
        raise ImageDecodeError(what, decoder_failure(e)) from None
    try:
        check_pixels(img.width, img.height, what)
    except BaseException:
        img.close()
        raise
    return img


def decode_image(data: bytes, what: str) -> tuple[Any, Reservation]:
    """The image in `data` decoded as `decoded` gives it, and its bytes' reservation in the process's decode
    budget (release it when the image is no longer held; it is also released when the image is collected).
    The header is checked against the pixel limit before anything is decoded (ResourceLimitError); a file
    that does not decode is an ImageDecodeError; both name `what`."""
    img = open_image_header(io.BytesIO(data), what)
    reservation = DECODE_BUDGET.reserve(decoded_bytes(img.width, img.height, len(img.getbands())))
    try:
        with img:
            out = decoded(img)  # first frame, EXIF orientation applied
    except MemoryError:
        reservation.release()
        raise ResourceLimitError(f"{what}: out of memory decoding it") from None
    except Exception as e:  # noqa: BLE001 - as above
        reservation.release()
        raise ImageDecodeError(what, decoder_failure(e)) from None
    except BaseException:
        reservation.release()
        raise
    reservation.hold_until_collected(out)
    return out, reservation


#: a frame that is not written: `<video url>#t=<seconds>&pts=<pts>[&v=<video version>]` (assets.frame_reference)
FRAME_REF_RE = re.compile(r"^(?P<video>.+)#t=(?P<t>-?[0-9.]+)&pts=(?P<pts>-?[0-9]*)(?:&v=[0-9a-f]+)?$")

_CACHES: dict[tuple[str, int], FileCache] = {}
_CACHES_LOCK = threading.Lock()


def shared_cache(directory: pathlib.Path, max_bytes: int) -> FileCache:
    """One FileCache object per (directory, bound) in a process, so counters and locks are shared."""
    key = (str(directory), max_bytes)
    with _CACHES_LOCK:
        cache = _CACHES.get(key)
        if cache is None:
            cache = _CACHES[key] = FileCache(directory, max_bytes)
    return cache


class MediaReader:
    """Turns stored URIs into local paths: in place for local files, through the file cache otherwise."""

    def __init__(self, cache: FileCache) -> None:
        self.cache = cache

    @contextlib.contextmanager
    def open(self, uri: str) -> Iterator[pathlib.Path]:
        """A local path for `uri`, valid (pinned in the cache if remote) until the block exits."""
        path = self.localpath(uri, must_exist=True)
        try:
            yield pathlib.Path(path)
        finally:
            release_pins([path])

    def read_bytes(self, uri: str) -> bytes:
        """The whole file at `uri` (media decoded whole, such as images): read in place for local files;
        from the cache for remote ones, or fetched in one request and added to the cache."""
        store = stores.store_for(uri)
        local = store.local_path(uri)
        if local is not None:
            try:
                return local.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                raise stores.StoreError(f"file not found: {local}", kind="not_found") from None
        return self.cache.fetch_bytes(uri, lambda: store.read_bytes(uri), suffix=suffix_of(uri), later=True)

    def localpath(self, uri: str, *, must_exist: bool = False) -> str:
        """The path of a local copy of `uri`, as `.localpath` reports and as functions of video, audio and
        documents get their file: the path itself for a local file (StoreError 'not_found' if it is missing
        and `must_exist`); for a remote one, a `PinnedPath` to the copy in the file cache (downloaded if
        needed), pinned for as long as the object is used (see PinnedPath)."""
        store = stores.store_for(uri)
        local = store.local_path(uri)
        if local is not None:
            if must_exist and not local.is_file():
                raise stores.StoreError(f"file not found: {local}", kind="not_found")
            return str(local)
        return PinnedPath(self.cache.pin(uri, lambda tmp: store.download(uri, tmp), suffix=suffix_of(uri)))


class PinnedPath(str):
    """The path (a `str`) of a file in the file cache that no process evicts while this object lives: what
    `.localpath` gives for remote media, and what functions of video, audio and documents are called with.

    The pin is released by `release()`, at the end of `with path:`, or when the object is garbage
    collected (on a background thread: `pxt_assets.cache.drain_releases()` waits for it). Strings made from
    it (`str(path)`, `pathlib.Path(path)`, a pickled copy) are plain and hold no pin, so keep the object
    itself for as long as the file is read."""

    _pin: Pin

    def __new__(cls, pin: Pin) -> PinnedPath:
        self = super().__new__(cls, str(pin.path))
        self._pin = pin
        return self

    @property
    def pinned(self) -> bool:
        """Whether this path still holds its pin."""
        return not self._pin.released

    def release(self) -> None:
        """Unpin the file now (idempotent); the path stays a string, and the file may then be evicted."""
        self._pin.release()

    def __enter__(self) -> PinnedPath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, (str(self),))  # a pin does not cross processes


def release_pins(values: Any) -> int:
    """Release the pins of the `PinnedPath`s among `values` (any iterable of values); returns how many."""
    n = 0
    for v in values:
        if isinstance(v, PinnedPath) and v.pinned:
            v.release()
            n += 1
    return n
