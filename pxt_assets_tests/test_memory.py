"""A batch's memory: rows drop images no later column reads, and freed image buffers stay mapped for the
next row instead of being faulted in again (see pxt_assets/memory.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

import pxt_assets as pxt
from pxt_assets.assets.computed import _released_after

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Four 3 MiB buffers per "row" (a decoded 1024x768 image and three outputs), freed together at the end of
# the row, on three threads; page faults counted per thread after two warm-up rows.
_ROWS_SCRIPT = textwrap.dedent("""
    import json, resource, threading
    from pxt_assets import memory
    tuned = memory.tune_malloc_for_batches()
    faults = []
    def work():
        def rows(k):
            for _ in range(k):
                bufs = [bytearray(3 << 20) for _ in range(4)]
                for b in bufs:
                    b[::4096] = b"x" * len(b[::4096])
                del bufs
        rows(2)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        rows(20)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"tuned": tuned, "faults": faults}))
""")


def _run_rows(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MALLOC_", "PXT_MALLOC")) and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", _ROWS_SCRIPT], env={**clean, **env}, capture_output=True,
                          text=True, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_image_buffers_stay_mapped_for_the_next_row():
    tuned = _run_rows()
    untuned = _run_rows(PXT_MALLOC_TUNING="0")
    assert untuned["tuned"] is False
    if not GLIBC:  # another C library: its malloc is left as it is
        assert tuned["tuned"] is False
        return
    assert tuned["tuned"] is True
    # 3 threads x 20 rows x 12 MiB: with glibc's defaults, threads hand the pages back and fault them in
    # again (3,000-4,000 faults per such thread here); with the thresholds set, the next row reuses them.
    assert sum(untuned["faults"]) > 2000, untuned
    assert sum(tuned["faults"]) < 200, tuned


@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "131072"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
                                 {"PXT_MALLOC_TUNING": "off"}])
def test_a_users_own_malloc_settings_are_left_alone(env):
    assert _run_rows(**env)["tuned"] is False


def test_a_row_drops_each_image_after_the_last_column_that_reads_it(pxt_home):
    t = pxt.MediaTable("mem/chain", {"source_image": pxt.Image})
    t.add_computed_column(rotated=t.source_image.rotate(90))
    t.add_computed_column(flipped=t.source_image.transpose(0))
    t.add_computed_column(rot_thumb=t.rotated.thumbnail((32, 32)))
    t.add_computed_column(width=t.source_image.width)
    t.add_computed_column(rot_width=t.rotated.width)
    t.add_computed_column(url=t.rot_thumb.fileurl)
    spec = t.spec
    released = {k: set(v) for k, v in _released_after(spec.computed_columns()).items()}
    assert released == {
        "rotated": set(),
        "flipped": {"flipped"},  # nothing reads it: dropped once stored
        "rot_thumb": set(),
        "width": {"source_image", "width"},
        "rot_width": {"rotated", "rot_width"},
        "url": {"rot_thumb", "url"},
    }
    # a subset (a backfill of one column) keeps only what that subset reads
    assert set(_released_after([spec.columns["rot_width"]])["rot_width"]) == {"rotated", "rot_width"}
