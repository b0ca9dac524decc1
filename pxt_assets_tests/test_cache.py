"""FileCache against the real filesystem, real threads and real processes (no mocks)."""

from __future__ import annotations

import concurrent.futures
import gc
import hashlib
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import weakref

import pytest

import pxt_assets.cache as cache_module
from pxt_assets.cache import CacheStats, FileCache, cache_key
from pxt_assets_tests.conftest import BARE_PACKAGE, PACKAGE_DIR


def payload(url: str, size: int) -> bytes:
    """Deterministic bytes for `url`, so a test can tell whose content a cached file holds."""
    seed = hashlib.sha256(url.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class Fetcher:
    """A fetch callback that records its calls and writes payload(url, size)."""

    def __init__(self, size: int = 20, delay: float = 0.0) -> None:
        self.size = size
        self.delay = delay
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, url: str):
        def fetch(tmp: pathlib.Path) -> None:
            with self._lock:
                self.calls.append(url)
            time.sleep(self.delay)
            tmp.write_bytes(payload(url, self.size))

        return fetch


def cached_files(cache: FileCache) -> list[pathlib.Path]:
    return sorted(p for p in (cache.directory / "files").iterdir())


def index_keys(cache: FileCache) -> set[str]:
    with sqlite3.connect(cache.directory / "index.db") as conn:
        return {row[0] for row in conn.execute("SELECT key FROM entries")}


def assert_consistent(cache: FileCache) -> None:
    """The index and the directory agree: same files, same byte total, no temp files left behind."""
    files = cached_files(cache)
    assert {p.name[:64] for p in files} == index_keys(cache)
    assert cache.total_bytes() == sum(p.stat().st_size for p in files)
    assert list((cache.directory / "tmp").iterdir()) == []


# --- single process -------------------------------------------------------------------------------


def test_cache_key_is_sha256_of_full_url() -> None:
    url = "https://example.com/a.jpg?X-Amz-Signature=abc"
    assert cache_key(url) == hashlib.sha256(url.encode()).hexdigest()


def test_miss_then_hit_fetches_once_and_counts(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 1000)
    fetcher = Fetcher(size=50)
    url = "https://example.com/img.jpg"

    with cache.pinned(url, fetcher(url), suffix=".jpg") as path:
        assert path.read_bytes() == payload(url, 50)
        assert path.suffix == ".jpg"
        assert path == cache.path_for(url, ".jpg")
    assert cache.get(url, fetcher(url), suffix=".jpg") == path

    assert fetcher.calls == [url]
    assert cache.stats == CacheStats(hits=1, misses=1, bytes_downloaded=50)
    assert cache.stats.as_dict() == {
        "hits": 1, "misses": 1, "bytes_downloaded": 50, "bytes_added": 0, "evictions": 0
    }
    assert cache.contains(url)
    assert cache.total_bytes() == 50
    assert_consistent(cache)


def test_urls_differing_only_in_query_string_are_separate_entries(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 1000)
    fetcher = Fetcher()
    url1, url2 = "https://example.com/x.png?v=1", "https://example.com/x.png?v=2"

    path1 = cache.get(url1, fetcher(url1))
    path2 = cache.get(url2, fetcher(url2))

    assert path1 != path2
    assert path1.read_bytes() == payload(url1, 20)
    assert path2.read_bytes() == payload(url2, 20)
    assert fetcher.calls == [url1, url2]
    assert len(cached_files(cache)) == 2


def test_eviction_removes_least_recently_used_first(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 100)  # low-water 90
    fetcher = Fetcher(size=20)
    a, b, c, d, e, f = (f"https://h/{n}" for n in "abcdef")
    for url in (a, b, c, d):
        cache.get(url, fetcher(url))
    cache.get(a, fetcher(a))  # a is now the most recently used
    cache.get(e, fetcher(e))  # 100 bytes: at the bound, not over it
    assert cache.stats.evictions == 0

    cache.get(f, fetcher(f))  # 120 bytes: evict the two least recently used, b then c, down to 80

    assert [cache.contains(u) for u in (a, b, c, d, e, f)] == [True, False, False, True, True, True]
    assert cache.stats.evictions == 2
    assert cache.total_bytes() == 80
    assert_consistent(cache)


def test_eviction_frees_down_to_low_water_mark_and_no_further(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 1000)
    fetcher = Fetcher(size=100)
    urls = [f"https://h/{i}" for i in range(11)]
    for url in urls:
        cache.get(url, fetcher(url))

    # 1100 bytes after the 11th file; 900 (the low-water mark) needs exactly two evictions.
    assert cache.low_water_bytes == 900
    assert cache.total_bytes() == 900
    assert cache.stats.evictions == 2
    assert not cache.contains(urls[0]) and not cache.contains(urls[1])
    assert all(cache.contains(u) for u in urls[2:])
    assert_consistent(cache)


def test_evict_and_clear_return_freed_bytes_and_keep_pinned_files(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 1000)
    fetcher = Fetcher(size=100)
    urls = [f"https://h/{i}" for i in range(5)]
    for url in urls:
        cache.get(url, fetcher(url))

    assert cache.evict(300) == 200
    assert cache.evict(300) == 0
    with cache.pinned(urls[4], fetcher(urls[4])):
        cache.clear()
        assert cache.contains(urls[4])
        assert cache.total_bytes() == 100
    cache.clear()
    assert cache.total_bytes() == 0
    assert cached_files(cache) == []
    assert_consistent(cache)


def test_pinned_file_survives_eviction_and_is_evictable_after_unpin(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 100)
    fetcher = Fetcher(size=30)
    pinned_url = "https://h/pinned"
    with cache.pinned(pinned_url, fetcher(pinned_url)) as path:
        for i in range(6):  # 210 bytes asked for in a 100-byte cache
            url = f"https://h/{i}"
            cache.get(url, fetcher(url))
        assert path.read_bytes() == payload(pinned_url, 30)
        assert cache.evict(0) > 0
        assert cache.contains(pinned_url)
    cache.evict(0)
    assert not cache.contains(pinned_url)
    assert_consistent(cache)


def test_file_larger_than_bound_is_kept_while_pinned_and_evicted_later(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 100)
    big = "https://h/big"
    with cache.pinned(big, Fetcher(size=150)(big)) as path:
        assert path.stat().st_size == 150
        cache.put("https://h/small", b"s" * 10)
        assert path.is_file()
    assert cache.contains(big)  # unpinning alone evicts nothing
    # Space is needed: least recently used first, so "small" (used before the big file was released) and then
    # the big file go, and the new file stays even though the cache is still far from full.
    cache.put("https://h/small2", b"s" * 10)
    assert not cache.contains(big)
    assert not cache.contains("https://h/small")
    assert cache.contains("https://h/small2")
    assert cache.total_bytes() == 10
    assert_consistent(cache)


def test_failing_fetch_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 1000)
    url = "https://h/broken.jpg"

    def failing_fetch(tmp: pathlib.Path) -> None:
        tmp.write_bytes(b"half a fi")
        raise ConnectionError("connection reset")

    with pytest.raises(ConnectionError, match="connection reset"):
        with cache.pinned(url, failing_fetch, suffix=".jpg"):
            pytest.fail("the block must not run when the fetch fails")

    assert not cache.contains(url)
    assert cached_files(cache) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    assert index_keys(cache) == set()
    assert cache.total_bytes() == 0
    assert cache.stats.bytes_downloaded == 0
    # The URL is not poisoned: the next request fetches it.
    fetcher = Fetcher()
    assert cache.get(url, fetcher(url), suffix=".jpg").read_bytes() == payload(url, 20)
    assert fetcher.calls == [url]
    assert_consistent(cache)


def test_file_deleted_behind_the_cache_is_fetched_again(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 1000)
    fetcher = Fetcher(size=40)
    url = "https://h/a"
    path = cache.get(url, fetcher(url))
    path.unlink()

    assert not cache.contains(url)
    assert cache.get(url, fetcher(url)).read_bytes() == payload(url, 40)
    assert fetcher.calls == [url, url]
    assert cache.stats.misses == 2
    assert cache.total_bytes() == 40  # the lost copy is not counted twice
    assert_consistent(cache)


def test_eight_threads_asking_for_one_url_download_it_once(tmp_path: pathlib.Path) -> None:
    # Two FileCache objects on one directory: threads of both must still share the single download.
    caches = [FileCache(tmp_path, 10_000), FileCache(tmp_path, 10_000)]
    fetcher = Fetcher(size=100, delay=0.3)
    url = "https://h/popular.jpg"
    barrier = threading.Barrier(8)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def read(cache: FileCache) -> None:
        try:
            barrier.wait()
            with cache.pinned(url, fetcher(url), suffix=".jpg") as path:
                results.append(path.read_bytes())
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=read, args=(caches[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert errors == []
    assert fetcher.calls == [url]
    assert results == [payload(url, 100)] * 8
    assert sum(c.stats.misses for c in caches) == 1
    assert sum(c.stats.hits for c in caches) == 7
    assert_consistent(caches[0])


def test_put_bytes_copy_and_move_are_served_without_fetching(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path / "cache", 1000)

    def no_fetch(tmp: pathlib.Path) -> None:
        raise AssertionError("put() entries must not be fetched")

    p1 = cache.put("https://h/bytes.jpg", b"b" * 10, suffix=".jpg")
    src_copy = tmp_path / "upload.png"
    src_copy.write_bytes(b"c" * 20)
    p2 = cache.put("https://h/copy.png", src_copy, suffix=".png")
    src_move = tmp_path / "moved.bin"
    src_move.write_bytes(b"m" * 30)
    p3 = cache.put("https://h/moved", src_move, move=True)

    assert src_copy.read_bytes() == b"c" * 20  # copied: the original stays
    assert not src_move.exists() and p3.read_bytes() == b"m" * 30  # moved into the cache
    assert (p1.suffix, p2.suffix) == (".jpg", ".png")
    with cache.pinned("https://h/bytes.jpg", no_fetch, suffix=".jpg") as path:
        assert path == p1 and path.read_bytes() == b"b" * 10
    assert cache.get("https://h/copy.png", no_fetch, suffix=".png").read_bytes() == b"c" * 20
    assert cache.get("https://h/moved", no_fetch).read_bytes() == b"m" * 30
    assert cache.stats.bytes_added == 60
    assert cache.stats.misses == 0 and cache.stats.hits == 3
    assert_consistent(cache)


def test_fetch_bytes_misses_once_then_serves_the_cached_file(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 10_000)
    url = "s3://b/photo.jpg"
    calls: list[str] = []

    def fetch() -> bytes:
        calls.append(url)
        return payload(url, 300)

    assert cache.fetch_bytes(url, fetch, suffix=".jpg") == payload(url, 300)
    assert cache.fetch_bytes(url, fetch, suffix=".jpg") == payload(url, 300)
    assert calls == [url]
    assert (cache.stats.misses, cache.stats.hits, cache.stats.bytes_downloaded) == (1, 1, 300)
    assert cache.stats.bytes_added == 0  # a download is not a write-through
    # the same entry serves path readers: no second download
    with cache.pinned(url, Fetcher()(url), suffix=".jpg") as path:
        assert path.suffix == ".jpg" and path.read_bytes() == payload(url, 300)
    assert calls == [url]
    assert_consistent(cache)


def test_fetch_bytes_fetches_again_when_the_file_vanished(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 10_000)
    url = "s3://b/gone.jpg"
    calls = []
    fetch = lambda: calls.append(1) or payload(url, 50)  # noqa: E731
    cache.fetch_bytes(url, fetch)
    cache.path_for(url).unlink()  # deleted behind the cache's back
    assert cache.fetch_bytes(url, fetch) == payload(url, 50)
    assert len(calls) == 2
    assert_consistent(cache)


def test_eight_threads_fetching_bytes_of_one_url_download_it_once(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 10_000)
    url = "s3://b/popular.jpg"
    calls: list[int] = []
    barrier = threading.Barrier(8)
    results: list[bytes] = []

    def fetch() -> bytes:
        calls.append(1)
        time.sleep(0.3)
        return payload(url, 100)

    def read() -> None:
        barrier.wait()
        results.append(cache.fetch_bytes(url, fetch))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert results == [payload(url, 100)] * 8
    assert (cache.stats.misses, cache.stats.hits) == (1, 7)
    assert_consistent(cache)


def test_put_many_publishes_all_or_nothing(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path / "cache", 10_000)
    paths = cache.put_many([(f"s3://b/{i}.jpg", payload(str(i), 10 + i), ".jpg") for i in range(5)])
    assert [p.read_bytes() for p in paths] == [payload(str(i), 10 + i) for i in range(5)]
    assert cache.stats.bytes_added == sum(10 + i for i in range(5))
    # one bad item (a missing source file): none of the batch is added, nothing is left in tmp/
    with pytest.raises(FileNotFoundError):
        cache.put_many([("s3://b/x.jpg", b"x" * 10, ".jpg"), ("s3://b/y.jpg", tmp_path / "missing", ".jpg")])
    assert not cache.contains("s3://b/x.jpg")
    assert_consistent(cache)


def test_lock_files_are_bounded_not_one_per_url(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 10**9)
    for i in range(300):
        cache.fetch_bytes(f"s3://b/{i}.jpg", lambda: b"x")
    names = [p.name for p in (tmp_path / "locks").iterdir()]
    assert 0 < len(names) < 300
    assert all(len(n) == len("abc.lock") for n in names)  # one per 3-hex-digit stripe of keys, 4096 at most


@pytest.mark.parametrize("locking", ["flock", "filelock"])
def test_two_urls_of_one_lock_stripe_are_fetched_one_after_the_other(tmp_path: pathlib.Path, monkeypatch,
                                                                      locking: str) -> None:
    # Different URLs have different in-process locks, so only the stripe's file lock keeps these two fetches
    # apart: it must exclude two threads of one process (flock: one descriptor per use), and the filelock
    # fallback (no fcntl, as on Windows) must too.
    if locking == "filelock":
        monkeypatch.setattr(cache_module, "fcntl", None)
    first = "s3://b/stripe-0.jpg"
    second = next(u for u in (f"s3://b/stripe-{i}.jpg" for i in range(1, 100_000))
                  if cache_key(u)[:3] == cache_key(first)[:3])
    cache = FileCache(tmp_path, 10_000)
    spans: dict[str, tuple[float, float]] = {}
    barrier = threading.Barrier(2)

    def read(url: str) -> None:
        def fetch() -> bytes:
            start = time.monotonic()
            time.sleep(0.3)
            spans[url] = (start, time.monotonic())
            return payload(url, 10)

        barrier.wait()
        assert cache.fetch_bytes(url, fetch) == payload(url, 10)

    threads = [threading.Thread(target=read, args=(u,)) for u in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    (a0, a1), (b0, b1) = sorted(spans.values())
    assert len(spans) == 2 and a1 <= b0, spans  # the second fetch began after the first ended
    assert len(list((tmp_path / "locks").iterdir())) == 1
    assert_consistent(cache)


def test_put_replaces_an_existing_entry_and_can_trigger_eviction(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 100)
    url = "https://h/a"
    cache.put(url, b"1" * 40)
    path = cache.put(url, b"2" * 50)
    assert path.read_bytes() == b"2" * 50
    assert cache.total_bytes() == 50

    cache.put("https://h/b", b"b" * 60)  # 110 > 100: the older entry goes, the new one stays
    assert not cache.contains(url)
    assert cache.contains("https://h/b")
    assert cache.stats.evictions == 1
    assert_consistent(cache)


def test_suffix_with_a_path_separator_is_rejected(tmp_path: pathlib.Path) -> None:
    cache = FileCache(tmp_path, 100)
    with pytest.raises(ValueError):
        cache.put("https://h/a", b"x", suffix="/../../escape")


def test_cache_reopened_from_the_same_directory_keeps_its_entries(tmp_path: pathlib.Path) -> None:
    FileCache(tmp_path, 1000).put("https://h/a", b"x" * 10)
    reopened = FileCache(tmp_path, 1000)
    assert reopened.contains("https://h/a")
    assert reopened.total_bytes() == 10


# --- several processes ------------------------------------------------------------------------------

# A worker process using its own FileCache on a shared directory. It prints one JSON line per step and, where
# it says so, waits for a line on stdin before going on, so the test controls the interleaving.
# It imports pxt_assets.cache without the package's __init__ (BARE_PACKAGE).
WORKER = BARE_PACKAGE + r"""
import hashlib, json, os, pathlib, sys, time

mode, directory, max_bytes, url, size, log = sys.argv[2:8]
import pxt_assets.cache as cache_module
FileCache = cache_module.FileCache

max_bytes, size = int(max_bytes), int(size)

def payload(url, size):
    seed = hashlib.sha256(url.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]

def say(msg, **kw):
    print(json.dumps({"msg": msg, **kw}), flush=True)

def fetch(tmp):
    start = time.time()
    tmp.write_bytes(payload(url, size // 2))
    if mode == "die-in-fetch":
        say("fetching")
        time.sleep(60)
    if mode in ("fetch", "fetch-bytes"):
        time.sleep(2)  # long enough for the other process to ask while this fetch runs, even on a loaded machine
    tmp.write_bytes(payload(url, size))
    # One short O_APPEND write per fetch: lines from several processes do not interleave.
    with open(log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}) + "\n")

cache = FileCache(directory, max_bytes)
say("ready")
sys.stdin.readline()
if mode == "fetch":
    called = time.time()
    path = cache.get(url, fetch)
    say("done", called=called, ok=path.read_bytes() == payload(url, size), stats=cache.stats.as_dict())
elif mode == "pin":
    with cache.pinned(url, fetch) as path:
        say("pinned", path=str(path))
        sys.stdin.readline()
    say("released")
elif mode == "fetch-bytes":
    def fetch_bytes():
        tmp = pathlib.Path(log + f".{os.getpid()}.tmp")
        fetch(tmp)
        return tmp.read_bytes()
    called = time.time()
    data = cache.fetch_bytes(url, fetch_bytes)
    say("done", called=called, ok=data == payload(url, size), stats=cache.stats.as_dict())
elif mode == "die-in-fetch":
    cache.get(url, fetch)
"""


class Worker:
    """A child process running WORKER with the venv's python."""

    def __init__(
        self, mode: str, cache_dir: pathlib.Path, max_bytes: int, url: str, size: int, log: pathlib.Path
    ) -> None:
        args = [str(PACKAGE_DIR), mode, str(cache_dir), str(max_bytes), url, str(size), str(log)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, msg: str) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"worker exited (rc={self.proc.wait()}) before saying {msg!r}"
        message = json.loads(line)
        assert message["msg"] == msg
        return message

    def send(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def workers():
    started: list[Worker] = []

    def start(*args) -> Worker:
        w = Worker(*args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()
        w.proc.wait(10)
        for stream in (w.proc.stdin, w.proc.stdout):
            if not stream.closed:
                stream.close()


def fill(cache: FileCache, n: int, size: int) -> None:
    fetcher = Fetcher(size=size)
    for i in range(n):
        url = f"https://h/fill/{i}"
        cache.get(url, fetcher(url))


@pytest.mark.parametrize("mode", ["fetch", "fetch-bytes"])
def test_two_processes_fetching_one_url_at_once_download_it_once(tmp_path: pathlib.Path, workers, mode) -> None:
    cache_dir, log = tmp_path / "cache", tmp_path / "fetches.jsonl"
    url = "https://h/shared.jpg?sig=1"
    procs = [workers(mode, cache_dir, 10_000, url, 100, log) for _ in range(2)]
    for p in procs:
        p.expect("ready")
    for p in procs:
        p.send()
    done = [p.expect("done") for p in procs]
    for p in procs:
        p.finish()

    fetches = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(fetches) == 1
    # Both asked while the one fetch was running, so this really was concurrent.
    assert all(d["called"] < fetches[0]["end"] for d in done)
    assert all(d["ok"] for d in done)
    assert sorted(d["stats"]["misses"] for d in done) == [0, 1]
    assert sorted(d["stats"]["hits"] for d in done) == [0, 1]
    assert_consistent(FileCache(cache_dir, 10_000))


def test_pinned_file_survives_eviction_from_another_process(tmp_path: pathlib.Path, workers) -> None:
    cache_dir, url = tmp_path / "cache", "https://h/held"
    holder = workers("pin", cache_dir, 100, url, 40, tmp_path / "log")
    holder.expect("ready")
    holder.send()
    path = pathlib.Path(holder.expect("pinned")["path"])

    cache = FileCache(cache_dir, 100)
    fill(cache, 8, 30)  # 280 bytes through a 100-byte cache
    assert cache.stats.evictions > 0
    assert path.read_bytes() == payload(url, 40)
    assert cache.contains(url)

    holder.send()
    holder.expect("released")
    holder.finish()
    cache.evict(0)
    assert not cache.contains(url)
    assert not path.exists()
    assert_consistent(cache)


def test_pin_of_killed_process_does_not_block_eviction(tmp_path: pathlib.Path, workers) -> None:
    cache_dir, url = tmp_path / "cache", "https://h/held"
    holder = workers("pin", cache_dir, 100, url, 40, tmp_path / "log")
    holder.expect("ready")
    holder.send()
    path = pathlib.Path(holder.expect("pinned")["path"])
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(10)

    cache = FileCache(cache_dir, 100)
    fill(cache, 4, 30)
    assert not cache.contains(url)
    assert not path.exists()
    assert_consistent(cache)


def test_pin_of_killed_but_unreaped_process_does_not_block_eviction(tmp_path: pathlib.Path, workers) -> None:
    cache_dir, url = tmp_path / "cache", "https://h/held"
    holder = workers("pin", cache_dir, 100, url, 40, tmp_path / "log")
    holder.expect("ready")
    holder.send()
    holder.expect("pinned")
    os.kill(holder.pid, signal.SIGKILL)
    # Not reaped: the pid stays taken (a zombie) until the fixture waits for it.
    deadline = time.monotonic() + 5
    while pathlib.Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)

    cache = FileCache(cache_dir, 100)
    assert cache.evict(0) == 40
    assert not cache.contains(url)


def test_process_killed_mid_fetch_blocks_nothing_and_its_temp_file_is_removed(
    tmp_path: pathlib.Path, workers
) -> None:
    cache_dir, url = tmp_path / "cache", "https://h/slow"
    victim = workers("die-in-fetch", cache_dir, 1000, url, 100, tmp_path / "log")
    victim.expect("ready")
    victim.send()
    victim.expect("fetching")
    assert len(list((cache_dir / "tmp").iterdir())) == 1
    os.kill(victim.pid, signal.SIGKILL)
    victim.proc.wait(10)

    cache = FileCache(cache_dir, 1000)  # opening the cache sweeps temp files of dead processes
    assert list((cache_dir / "tmp").iterdir()) == []
    fetcher = Fetcher(size=100)
    started = time.monotonic()
    assert cache.get(url, fetcher(url)).read_bytes() == payload(url, 100)  # the URL's lock died with it
    assert time.monotonic() - started < 2
    assert fetcher.calls == [url]
    assert_consistent(cache)


def test_fetch_bytes_later_serves_the_bytes_at_once_and_publishes_them_in_the_background(tmp_path: pathlib.Path) -> None:
    """A batch's row threads (`later=True`): the download is handed to the filler thread; meanwhile this
    process's readers get the same bytes without a second fetch, and after `wait_for_puts` the file is in the
    index, not counted as a write-through."""
    cache = FileCache(tmp_path, 100_000)
    urls = [f"s3://b/src/{i}.jpg" for i in range(40)]
    calls: list[str] = []

    def fetcher(url: str):
        def fetch() -> bytes:
            calls.append(url)
            return payload(url, 500)
        return fetch

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda u: cache.fetch_bytes(u, fetcher(u), suffix=".jpg", later=True), urls * 2))
    assert got == [payload(u, 500) for u in urls * 2]
    assert sorted(calls) == sorted(urls)  # each fetched once, whether served from memory or from the index
    cache.wait_for_puts()
    assert not cache._pending
    for u in urls:
        assert cache.contains(u) and cache.path_for(u, ".jpg").read_bytes() == payload(u, 500)
    assert cache.stats.bytes_added == 0 and cache.stats.bytes_downloaded == 40 * 500
    assert cache.fetch_bytes(urls[0], fetcher(urls[0]), later=True) == payload(urls[0], 500)
    assert len(calls) == 40
    assert_consistent(cache)


def test_an_idle_filler_exits_and_lets_its_cache_go_and_the_next_hand_over_starts_another(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The filler thread held its cache (and the cache's SQLite connections) for the life of the process: a
    long-lived process that opened many caches ran out of file descriptors. Idle, it exits; a file handed
    over afterwards starts a new one and is published like the first."""
    monkeypatch.setattr(cache_module._Filler, "IDLE_S", 0.2)
    cache = FileCache(tmp_path / "a", 100_000)
    cache.put_later("s3://b/one.jpg", payload("s3://b/one.jpg", 300), suffix=".jpg")
    first = cache._filler
    assert first is not None
    cache.wait_for_puts()
    first.thread.join(10)
    assert not first.thread.is_alive() and cache._filler is None
    cache.put_later("s3://b/two.jpg", payload("s3://b/two.jpg", 300), suffix=".jpg")
    cache.wait_for_puts()
    assert cache._filler is not first
    for u in ("s3://b/one.jpg", "s3://b/two.jpg"):
        assert cache.path_for(u, ".jpg").read_bytes() == payload(u, 300)
    assert_consistent(cache)

    other = FileCache(tmp_path / "b", 100_000)
    other.put_later("s3://b/three.jpg", payload("s3://b/three.jpg", 300), suffix=".jpg")
    other.wait_for_puts()
    filler, ref = other._filler, weakref.ref(other)
    del other
    filler.thread.join(10)
    del filler
    gc.collect()
    assert ref() is None  # nothing keeps an unused cache alive once its filler has gone


def test_hand_overs_racing_the_filler_going_idle_are_all_published(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads hand files over in bursts spaced about the idle time apart, so fillers exit while others are
    being handed files: every file ends up published (none queued to a filler that had already gone)."""
    monkeypatch.setattr(cache_module._Filler, "IDLE_S", 0.01)
    cache = FileCache(tmp_path, 1_000_000)
    urls = [f"s3://b/race/{i}.jpg" for i in range(400)]

    def hand(i: int) -> None:
        if i % 7 == 0:
            time.sleep(0.012)
        cache.put_later(urls[i], payload(urls[i], 64), suffix=".jpg")

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(hand, range(len(urls))))
    cache.wait_for_puts()  # a filler goes only once its queue is empty: the current one has the rest
    assert [u for u in urls if not cache.contains(u)] == []
    assert_consistent(cache)
