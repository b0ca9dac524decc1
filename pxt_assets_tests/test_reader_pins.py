"""Every reader of a cached file holds a pin (Pixeltable's bug #1551): `.localpath` values, functions of a
video mid-decode, and frame cursors keep their file against another process evicting the cache as hard as
it can; once released, the same eviction removes it. Real processes, a real HTTP server, a real instance."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import pxt_assets as pxt
from pxt_assets.cache import FileCache, drain_releases
from pxt_assets.evaluate import close_frame_cursors, decode_frame
from pxt_assets.media import MediaReader, PinnedPath
from pxt_assets_tests.conftest import BARE_PACKAGE, PACKAGE_DIR
from pxt_assets_tests.mediagen import make_video

PACKAGE = PACKAGE_DIR

# Another process evicting the shared cache as hard as it can: a cache object bounded at 1 KB fills it with
# 40 files of its own (each evicting what it can), then evicts everything unpinned. Prints one JSON line.
EVICTOR = BARE_PACKAGE + r"""
import json, os
from pxt_assets.cache import FileCache

cache = FileCache(sys.argv[2], 1024)
for i in range(40):
    cache.get(f"https://evictor/{os.getpid()}/{i}", lambda tmp: tmp.write_bytes(os.urandom(700)))
freed = cache.evict(0)
print(json.dumps({"evictions": cache.stats.evictions, "freed": freed, "left": cache.total_bytes()}))
"""


def evict_from_another_process(cache_dir: pathlib.Path) -> dict:
    out = subprocess.run([sys.executable, "-c", EVICTOR, str(PACKAGE), str(cache_dir)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["evictions"] >= 39  # it really evicted: its own files, and anything else unpinned
    return report


@pytest.fixture
def served_video(http_server) -> tuple[str, pathlib.Path]:
    video = make_video(http_server.root / "clip.mp4", seconds=2.0, fps=10)
    return http_server.url("clip.mp4"), video


@pytest.fixture
def video_table(pxt_home, instance, served_video):
    url, _ = served_video
    pxt.create_dir("pins")
    t = pxt.create_table("pins/clips", {"video": pxt.Video})
    t.insert([{"video": url}], instance=instance)  # a URL: stored as given, fetched into the cache when read
    return t


# --- the handle -------------------------------------------------------------------------------------------


def test_a_dropped_pin_is_released_even_from_inside_an_index_transaction(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path / "cache", 10_000)
    url = "https://h/a.bin"
    pin = cache.pin(url, lambda tmp: tmp.write_bytes(b"x" * 100))
    assert cache.pin_count(url) == 1 and pin.path.read_bytes() == b"x" * 100
    # A finalizer can run anywhere, even while this thread holds the index's write lock: it must only queue.
    with cache._transaction():
        del pin
        gc.collect()
    assert drain_releases(timeout=60)
    assert cache.pin_count(url) == 0
    assert cache.evict(0) == 100


def _drop_inherited_pin(holder: list) -> None:
    holder.clear()  # the forked child's copy of the parent's pin dies here
    gc.collect()
    drain_releases(timeout=60)


def test_a_forked_childs_copy_of_a_pin_does_not_release_the_parents(tmp_path: pathlib.Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    cache = FileCache(tmp_path / "cache", 10_000)
    url = "https://h/b.bin"
    holder = [PinnedPath(cache.pin(url, lambda tmp: tmp.write_bytes(b"y" * 100)))]
    child = multiprocessing.get_context("fork").Process(target=_drop_inherited_pin, args=(holder,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert cache.pin_count(url) == 1 and holder[0].pinned
    with holder[0] as path:  # the context manager releases it now
        assert pathlib.Path(path).read_bytes() == b"y" * 100
    assert cache.pin_count(url) == 0 and not holder[0].pinned


def test_pinned_path_is_a_plain_path_string_to_everything_else(tmp_path: pathlib.Path) -> None:
    import pickle

    cache = FileCache(tmp_path / "cache", 10_000)
    path = PinnedPath(cache.pin("https://h/c.txt", lambda tmp: tmp.write_bytes(b"z"), suffix=".txt"))
    assert path == str(path) and path.endswith(".txt") and os.fspath(path) == str(path)
    assert open(path, "rb").read() == b"z" and pathlib.Path(path).exists()
    copy = pickle.loads(pickle.dumps(path))
    assert type(copy) is str and copy == path  # a pin does not travel
    path.release()
    path.release()  # idempotent
    assert cache.pin_count("https://h/c.txt") == 0


# --- readers against another process's eviction ------------------------------------------------------------


def test_localpath_keeps_its_file_against_another_processes_eviction_until_released(video_table, pxt_home,
                                                                                     served_video):
    t, (url, video) = video_table, served_video
    cache_dir = pxt_home / "file_cache"
    cache = FileCache(cache_dir, 1 << 30)

    df = t.select(p=t.video.localpath).collect()
    path = df["p"][0]
    assert pathlib.Path(path).parent.parent == cache_dir

    evict_from_another_process(cache_dir)
    assert pathlib.Path(path).exists(), "evicted while the .localpath value was alive"
    assert pathlib.Path(path).read_bytes() == video.read_bytes()  # whole
    assert isinstance(path, PinnedPath) and path.pinned and cache.pin_count(url) == 1

    with df:  # released at the end of the block
        pass
    assert cache.pin_count(url) == 0
    evict_from_another_process(cache_dir)
    assert not pathlib.Path(path).exists() and not cache.contains(url)

    # Dropped without release: the pin goes with the value (garbage collected, released in the background).
    df = t.select(p=t.video.localpath).collect()
    path = str(df["p"][0])  # a plain copy of the path: holds nothing
    evict_from_another_process(cache_dir)
    assert pathlib.Path(path).exists()
    del df
    gc.collect()
    assert drain_releases(timeout=60)
    evict_from_another_process(cache_dir)
    assert not pathlib.Path(path).exists()


# The reader: a UDF decoding the table's video, paused mid-decode until the test says go.
READER = textwrap.dedent(r"""
    import json, sys
    import av
    import pxt_assets as pxt
    from pxt_assets.cache import drain_releases

    def say(msg, **kw):
        print(json.dumps({"msg": msg, **kw}), flush=True)

    @pxt.udf
    def frames_decoded(video: pxt.Video) -> int:
        with av.open(str(video)) as container:
            frames = container.decode(container.streams.video[0])
            next(frames)
            say("mid-decode", path=str(video))
            sys.stdin.readline()
            return 1 + sum(1 for _ in frames)

    t = pxt.get_table("pins/clips")
    n = t.select(n=frames_decoded(t.video)).collect()["n"][0]
    drain_releases()  # the video's pin went with the call: wait for this process to have released it
    say("done", n=int(n))
    sys.stdin.readline()
""")


def test_a_function_mid_decode_keeps_its_file_against_another_processes_eviction(video_table, pxt_home,
                                                                                   served_video, tmp_path):
    url, video = served_video
    cache_dir = pxt_home / "file_cache"
    script = tmp_path / "reader.py"
    script.write_text(READER)
    reader = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})

    def expect(msg: str) -> dict:
        line = reader.stdout.readline()
        assert line, f"the reader exited (rc={reader.wait()}) before saying {msg!r}"
        got = json.loads(line)
        assert got["msg"] == msg
        return got

    def go() -> None:
        reader.stdin.write("go\n")
        reader.stdin.flush()

    try:
        path = pathlib.Path(expect("mid-decode")["path"])
        cache = FileCache(cache_dir, 1024)  # this process evicts: a tiny bound, other files, evict(0)
        assert path.parent.parent == cache_dir
        for i in range(40):
            cache.get(f"https://other/{i}", lambda tmp: tmp.write_bytes(os.urandom(700)))
        cache.evict(0)
        assert cache.stats.evictions >= 39
        assert path.exists(), "evicted while a function was decoding it"
        assert path.read_bytes() == video.read_bytes() and cache.pin_count(url) == 1
        go()
        assert expect("done")["n"] == 20  # every frame decoded from the file it started on
        # The reader is still running (waiting), and its pin is gone: the file can go now.
        assert cache.pin_count(url) == 0
        cache.evict(0)
        assert not path.exists()
        go()
        assert reader.wait(60) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
        reader.wait()
        reader.stdin.close()
        reader.stdout.close()


def test_a_frame_cursor_pins_its_video_while_open(tmp_path: pathlib.Path, http_server, served_video) -> None:
    url, _ = served_video
    cache = FileCache(tmp_path / "cache", 1024)  # smaller than the video: anything unpinned goes
    reader = MediaReader(cache)
    try:
        frame = decode_frame(reader, url, 0.5, None)  # opens a cursor, kept across rows
        assert frame.size == (64, 48)
        cache.evict(0)
        assert cache.contains(url) and cache.pin_count(url) == 1
        decode_frame(reader, url, 1.0, None)  # read from the same open file
    finally:
        close_frame_cursors()
    assert cache.pin_count(url) == 0
    cache.evict(0)
    assert not cache.contains(url)

