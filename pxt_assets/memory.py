"""glibc malloc thresholds for batches of large, short-lived buffers.

A batch decodes, transforms and encodes images of megabytes on several threads. With glibc's defaults each
thread's heap is trimmed (pages handed back to the kernel with madvise or brk) whenever enough of it is
free at the top, and the next row faults the same pages in again, zero-filled. On the seed pipeline
(1024x768 JPEGs, three image columns) that was 370 to 1,800 page faults and 1.5 to 3 ms of kernel time per
row, more than the rest of the framework's overhead. Raising the two thresholds keeps those pages in
the process for the next row: about 10 faults per row.

The thresholds are those glibc itself moves to for blocks of this size (its dynamic rule raises the mmap
threshold up to 32 MiB and keeps the trim threshold at twice it); set explicitly, they no longer depend on
which block happened to be freed first. The price is memory: each thread's heap keeps up to its peak
mapped, so peak RSS is higher. In the benchmark it was 429 against 383 MB at 2,000 rows and 481 against
410 MB at 5,000 rows; that is within the RSS target (1.26 times the 200-row peak).

Set once per process, on glibc only, the first time a batch runs. Left alone when the user set
`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or glibc malloc tunables, or `PXT_MALLOC_TUNING=0`.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
from typing import Any

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the largest value glibc accepts
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def _user_chose() -> bool:
    if os.environ.get("PXT_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return True
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return True
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


@functools.cache
def tune_malloc_for_batches() -> bool:
    """Set the thresholds (once per process); returns whether they are set by this module."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or _user_chose():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("glibc malloc thresholds %s: mmap %d, trim %d", "set" if ok else "not set", MMAP_THRESHOLD,
              TRIM_THRESHOLD)
    return ok


#: a decoded image at least this large is given back to the kernel when released (see give_back_large_free)
GIVE_BACK_ABOVE = 64 << 20


@functools.cache
def _malloc_trim() -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def give_back_large_free(nbytes: int) -> None:
    """After a decoded image of `nbytes` is released: if it was large, hand the free pages of every malloc
    arena back to the kernel (glibc's malloc_trim). Pillow allocates images in 16 MB blocks, below the mmap
    threshold, so each row thread's arena otherwise keeps the peak of the largest images it ever held: eight
    threads that each once held a 150 MB image and its rotated copy kept 3.2 GB resident, whatever the decode
    budget. Trimming costs a walk of the arenas: nothing next to decoding 64 MB."""
    if nbytes >= GIVE_BACK_ABOVE:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
