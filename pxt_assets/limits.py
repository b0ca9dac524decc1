"""Limits on decoding untrusted media: a pixel limit checked from the header before anything is decoded,
and one budget of decoded bytes shared by every thread of the process.

A 441 KB PNG can declare 12,000 x 12,000 pixels (1.3 GB decoded), a video frame 16,000 x 16,000; eight row
threads decoding such files at once would need 9 GB. So:

- `check_pixels` refuses an image or frame whose width x height exceeds the `max_image_pixels` setting,
  from its header (Pillow's lazy `Image.open`, PyAV's codec context), before a pixel is decoded;
- `DECODE_BUDGET.reserve(n)` waits until `n` more decoded bytes fit in the `decode_budget_g` setting. A
  reservation is given back when the image it was taken for is released (or garbage collected). A single
  image larger than the whole budget (but under the pixel limit) still runs, alone; a thread that already
  holds a reservation is never made to wait for another (a row decoding its second image while every other
  thread waits for the first would deadlock).

A file over a limit is that row's error, `resource_limit`, never the process's.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from pxt_assets.config import current_settings
from pxt_assets.errors import ErrorCode
from pxt_assets.memory import give_back_large_free
from pxt_assets.redaction import redact


class ResourceLimitError(Exception):
    """A file would need more than a limit allows to decode, or it crashed the process reading it. Its
    `kind` is `resource_limit` (a row error, not retried: the same file fails the same way)."""

    kind = ErrorCode.RESOURCE_LIMIT

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def max_image_pixels() -> int:
    """The `max_image_pixels` setting: the largest width x height decoded."""
    return current_settings().max_image_pixels


def check_pixels(width: int, height: int, what: str) -> None:
    """Raise ResourceLimitError if a `width` x `height` image (`what`: e.g. 'image /x.png') is over the pixel
    limit."""
    limit = max_image_pixels()
    if width * height > limit:
        raise ResourceLimitError(
            f"{what} is {width} x {height} = {width * height:,} pixels, over the limit of {limit:,} "
            f"(the max_image_pixels setting); it is not decoded")


def decoded_bytes(width: int, height: int, bands: int) -> int:
    """The size of a decoded image (one byte per band, as Pillow's 8-bit modes hold it)."""
    return max(1, width * height * max(1, bands))


class Reservation:
    """Bytes held in a DecodeBudget until `release()` (idempotent)."""

    __slots__ = ("budget", "nbytes", "thread", "released", "__weakref__")

    def __init__(self, budget: DecodeBudget, nbytes: int, thread: int) -> None:
        self.budget, self.nbytes, self.thread, self.released = budget, nbytes, thread, False

    def release(self) -> None:
        self.budget._give_back(self)

    def hold_until_collected(self, obj: Any) -> Any:
        """Release when `obj` (the decoded image) is garbage collected, if not released before; returns obj."""
        weakref.finalize(obj, self.release)
        return obj


class DecodeBudget:
    """A byte budget shared by a process's threads (a semaphore counted in bytes); see the module doc."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit  # None: the decode_budget_g setting, read at each reservation
        self._cond = threading.Condition()
        self.in_use = 0
        self.peak = 0
        self._held_by: dict[int, int] = {}  # thread id -> reservations it holds

    @property
    def limit(self) -> int:
        return self._limit if self._limit is not None else current_settings().decode_budget_bytes

    def reserve(self, nbytes: int) -> Reservation:
        """Wait until `nbytes` fit (or nothing else is held, or this thread already holds some), then hold them."""
        me = threading.get_ident()
        with self._cond:
            while self.in_use and self.in_use + nbytes > self.limit and not self._held_by.get(me):
                self._cond.wait()
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
            self._held_by[me] = self._held_by.get(me, 0) + 1
            return Reservation(self, nbytes, me)

    def _give_back(self, reservation: Reservation) -> None:
        with self._cond:
            if reservation.released:
                return
            reservation.released = True
            self.in_use -= reservation.nbytes
            left = self._held_by.get(reservation.thread, 0) - 1
            if left > 0:
                self._held_by[reservation.thread] = left
            else:
                self._held_by.pop(reservation.thread, None)
            self._cond.notify_all()
        give_back_large_free(reservation.nbytes)  # the image's pages go back to the kernel, not to an arena


#: the process's budget of decoded image bytes (the decode_budget_g setting)
DECODE_BUDGET = DecodeBudget()

__all__ = ["DECODE_BUDGET", "DecodeBudget", "Reservation", "ResourceLimitError", "check_pixels", "decoded_bytes",
           "max_image_pixels"]
