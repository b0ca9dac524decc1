"""The local file cache for remote media: bounded, LRU, pinned while read, shared by threads and processes.

Layout under the cache directory (``$PIXELTABLE_HOME/file_cache``)::

    index.db            SQLite index (WAL): entries (key, url, path, size, last_used), pins, byte total
    index.db.lock       serialises creation of the schema
    files/<key><suffix> cached files; key = sha256 of the full URL
    tmp/<ns>-<pid>-...  files being written (fetch or put), renamed into files/ when complete
    locks/<kkk>.lock    held while a URL whose key starts with kkk is fetched, so it is downloaded once

The index is the only source of truth for sizes and recency, so evicting never lists the directory. Every
change to the index happens in a ``BEGIN IMMEDIATE`` transaction, and files are deleted and renamed into
place inside that transaction: a reader that sees an entry in the index therefore finds its file, and a file
evicted from the index is gone before anyone can miss on it and fetch it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pathlib
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import filelock

from pxt_assets import fsutil
from pxt_assets.procid import current_process, pid_alive
from pxt_assets.redaction import redact

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt locks
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger(__name__)

#: eviction frees space down to this fraction of the bound, so that adding files one at a time to a full
#: cache does not run an eviction for every file
LOW_WATER_FRACTION = 0.9

# Generous: a writer holds the index only for a few small statements and some unlinks, never during a fetch.
_BUSY_TIMEOUT_S = 60.0

_SCHEMA_VERSION = 1

# 16**3 = 4096 lock files at most under locks/ (see _fetch_lock).
_LOCK_STRIPE_DIGITS = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    url TEXT NOT NULL,           -- for people reading the index: credentials redacted
    path TEXT NOT NULL,          -- relative to the cache directory
    size INTEGER NOT NULL,
    last_used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_last_used ON entries (last_used);
CREATE TABLE IF NOT EXISTS pins (
    token TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    pid INTEGER NOT NULL,
    proc_start INTEGER,          -- process start time (Linux): a recycled pid must not keep a pin alive
    proc_ns TEXT NOT NULL        -- host and pid namespace: a pid only means something within its namespace
);
CREATE INDEX IF NOT EXISTS pins_by_key ON pins (key);
-- The running total makes the bound check O(1); triggers keep it right whatever statement changes entries.
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals (id, bytes) VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_total_insert AFTER INSERT ON entries
    BEGIN UPDATE totals SET bytes = bytes + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_total_delete AFTER DELETE ON entries
    BEGIN UPDATE totals SET bytes = bytes - OLD.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_total_update AFTER UPDATE OF size ON entries
    BEGIN UPDATE totals SET bytes = bytes - OLD.size + NEW.size WHERE id = 0; END;
"""


def cache_key(url: str) -> str:
    """The cache key of `url`: sha256 hex of the full URL, query string included."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    """Counters of one FileCache object (this process only)."""

    hits: int = 0
    misses: int = 0
    bytes_downloaded: int = 0  # bytes fetched into the cache by fetch callbacks
    bytes_added: int = 0  # bytes added by put() (write-through)
    evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return dataclasses.asdict(self)


# One writer at a time per index file within this process. SQLite's busy handler makes waiting connections
# sleep and retry (up to 100 ms a try); threads queued on a lock are woken as soon as the writer is done.
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(db_path: pathlib.Path) -> threading.Lock:
    with _write_locks_guard:
        return _write_locks.setdefault(str(db_path), threading.Lock())


def _reset_write_locks_in_child() -> None:
    # A lock held by another thread at fork() would never be released in the child.
    global _write_locks_guard
    _write_locks_guard = threading.Lock()
    _write_locks.clear()
    _unpinner.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_write_locks_in_child)


# --- the cache ----------------------------------------------------------------------------------------


class FileCache:
    """A bounded, LRU-evicted cache of remote files in a local directory, shared by threads and processes.

    Files are keyed by the sha256 of their URL. `pinned()` hands out a path that is not evicted until the
    block exits; a URL missing from the cache is fetched exactly once however many threads and processes
    ask for it at the same time. When adding a file takes the cache over `max_bytes`, the least recently
    used unpinned files are evicted down to 90% of the bound.
    """

    def __init__(self, directory: str | os.PathLike, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = pathlib.Path(directory).absolute()
        self.max_bytes = int(max_bytes)
        self.stats = CacheStats()
        self._files_dir = self.directory / "files"
        self._tmp_dir = self.directory / "tmp"
        self._locks_dir = self.directory / "locks"
        self._db_path = self.directory / "index.db"
        for d in (self._files_dir, self._tmp_dir, self._locks_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._stats_lock = threading.Lock()
        # Per-URL locks within this process: waiting threads block on a threading.Lock instead of each polling
        # the file lock, which is still taken after it to exclude other processes.
        self._key_locks: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._key_locks_guard = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._pool_pid = os.getpid()
        self._pool_lock = threading.Lock()
        self._filler: _Filler | None = None
        self._filler_guard = threading.Lock()
        #: bytes fetched and handed to the filler, not published yet (key -> bytes): served from here meanwhile
        self._pending: dict[str, bytes] = {}
        self._init_index()
        self._remove_orphan_temp_files()

    def __reduce__(self) -> tuple[type[FileCache], tuple[pathlib.Path, int]]:
        # Connections and locks do not cross processes; the other side opens its own (counters start at 0).
        return (FileCache, (self.directory, self.max_bytes))

    def __repr__(self) -> str:
        return f"FileCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    # --- public API ---------------------------------------------------------------------------------

    @property
    def low_water_bytes(self) -> int:
        """The size eviction frees space down to (90% of `max_bytes`)."""
        return int(self.max_bytes * LOW_WATER_FRACTION)

    def path_for(self, url: str, suffix: str = "") -> pathlib.Path:
        """Where the file for `url` lives (or would live) in the cache."""
        _check_suffix(suffix)
        return self._files_dir / f"{cache_key(url)}{suffix}"

    @contextlib.contextmanager
    def pinned(
        self, url: str, fetch: Callable[[pathlib.Path], None], *, suffix: str = ""
    ) -> Iterator[pathlib.Path]:
        """Yield a local path holding the file for `url`, pinned (not evictable) until the block exits.

        On a miss, calls ``fetch(tmp_path)``, which must write the file's bytes to `tmp_path` (an existing
        empty file in the cache directory); the temp file is then renamed into place. If fetch raises,
        nothing is left in the cache and the exception propagates. `suffix` (e.g. ".jpg") is appended to the
        cached file name so tools that sniff extensions work; a URL already cached keeps the name it was
        first stored under.
        """
        pin = self.pin(url, fetch, suffix=suffix)
        try:
            yield pin.path
        finally:
            pin.release()

    def pin(self, url: str, fetch: Callable[[pathlib.Path], None], *, suffix: str = "") -> Pin:
        """`pinned()` as a handle, for a reader whose use of the file does not fit one block (a video kept
        open across rows, a `.localpath` handed to the user): the file stays pinned until `Pin.release()`,
        or until the handle is garbage collected (then released on a background thread: see
        `drain_releases`)."""
        _check_suffix(suffix)
        _unpinner.start()  # here, not from a finalizer: starting a thread there could deadlock
        key = cache_key(url)
        token = uuid.uuid4().hex
        path = self._pin_existing(key, token)
        if path is not None:
            self._count(hits=1)
        else:
            path = self._fetch_pinned(url, key, token, fetch, suffix)
        return Pin(self, key, token, path)

    def pin_count(self, url: str) -> int:
        """How many pins (of any process) `url`'s file has now."""
        with self._connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM pins WHERE key = ?", (cache_key(url),)).fetchone()[0]

    def get(self, url: str, fetch: Callable[[pathlib.Path], None], *, suffix: str = "") -> pathlib.Path:
        """Like `pinned()` but unpinned: the path once the file is present (it may be evicted later)."""
        with self.pinned(url, fetch, suffix=suffix) as path:
            return path

    def put(
        self, url: str, src: pathlib.Path | bytes, *, suffix: str = "", move: bool = False
    ) -> pathlib.Path:
        """Write-through: store a file we already have (just uploaded) under `url`'s key without fetching.

        `src` may be a path (copied, or moved when `move=True`) or bytes. The file appears atomically,
        replaces any cached file for `url`, and may trigger eviction of other files. Returns the cached path.
        """
        return self.put_many([(url, src, suffix)], move=move)[0]

    def put_many(
        self, items: list[tuple[str, pathlib.Path | bytes, str]], *, move: bool = False
    ) -> list[pathlib.Path]:
        """`put` for several (url, src, suffix) at once, published in one index transaction: how a writer
        that has just uploaded a stream of files fills the cache without taking the index once per file."""
        paths, sizes = self._add(items, move=move)
        self._count(bytes_added=sum(sizes))
        return paths

    def put_later(self, url: str, src: pathlib.Path | bytes, *, suffix: str = "", move: bool = False) -> None:
        """`put` done by this cache's filler thread: the caller (a row thread that has just uploaded a file)
        goes on at once, and the filler publishes whatever has queued up in one index transaction. A moved
        file is the filler's to delete. `wait_for_puts()` returns once everything queued so far is in."""
        self._hand_to_filler(url, src, suffix, move=move, written=True)

    def _hand_to_filler(self, url: str, src: pathlib.Path | bytes, suffix: str, *, move: bool,
                        written: bool) -> None:
        """Queue a file for the filler thread, starting one if there is none (first use, after a fork, or
        after the last one went idle). Under the guard, so that an idle filler never exits with work queued."""
        with self._filler_guard:
            if self._filler is None or not self._filler.thread.is_alive():
                self._filler = _Filler(self)
            self._filler.put(url, src, suffix, move=move, written=written)

    def wait_for_puts(self) -> None:
        """Wait until every file handed to `put_later` (and every `fetch_bytes(later=True)`) is published."""
        filler = self._filler
        if filler is not None and filler.thread.is_alive():
            filler.flush()

    def _add(self, items: list[tuple[str, pathlib.Path | bytes, str]], *,
             move: bool) -> tuple[list[pathlib.Path], list[int]]:
        """Stage files in tmp/ and publish them in one transaction; returns their paths and sizes."""
        staged: list[tuple[str, str, str, pathlib.Path, int, pathlib.Path | bytes, bool]] = []
        paths: list[pathlib.Path] = []
        try:
            for url, src, suffix in items:
                _check_suffix(suffix)
                fd, tmp = self._new_temp_file(suffix)
                try:
                    if isinstance(src, (bytes, bytearray, memoryview)):
                        with open(fd, "wb") as out:  # the descriptor mkstemp opened: no second open
                            out.write(src)
                        size, moved = memoryview(src).nbytes, False
                    else:
                        os.close(fd)
                        if move:
                            # shutil.move falls back to copy + delete when src is on another filesystem.
                            shutil.move(os.fspath(src), tmp)
                        else:
                            shutil.copyfile(src, tmp)
                        size, moved = tmp.stat().st_size, move
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                staged.append((url, cache_key(url), suffix, tmp, size, src, moved))
            # Every file synced before any rename (in _publishing_many), outside the index lock: a power cut
            # leaves no torn file under an index entry. All written first, then synced: the first fsync commits
            # the filesystem's journal for all of them, so the others only wait for their own data (one
            # journal commit per batch of files instead of one per file).
            for item in staged:
                fsutil.sync_file(item[3])
            # No fetch lock: the index transaction orders a put against a concurrent fetch of the same URL,
            # and whichever publishes second keeps the name the first one recorded.
            with self._publishing_many() as publish:
                conn = publish.conn
                for url, key, suffix, tmp, size, _, _ in staged:
                    row = conn.execute("SELECT path FROM entries WHERE key = ?", (key,)).fetchone()
                    # Keep an existing entry's name: readers may hold that path, and a second name would leak.
                    rel = row[0] if row else self._relpath(key, suffix)
                    conn.execute(
                        "INSERT INTO entries (key, url, path, size, last_used) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET size = excluded.size, last_used = excluded.last_used",
                        (key, redact(url), rel, size, _next_use_time(conn)),
                    )
                    paths.append(publish.move(tmp, self.directory / rel))
                total = _total(conn)
        except BaseException:
            for _, _, _, tmp, _, src, moved in staged:
                if moved:
                    # Give the caller's file back rather than destroy it.
                    with contextlib.suppress(OSError):
                        shutil.move(tmp, os.fspath(src))  # type: ignore[arg-type]
                tmp.unlink(missing_ok=True)
            raise
        _logger.debug("cache added %d files", len(staged))
        if total > self.max_bytes:
            self._evict(self.low_water_bytes, protect={item[1] for item in staged})
        return paths, [item[4] for item in staged]

    def fetch_bytes(self, url: str, fetch: Callable[[], bytes], *, suffix: str = "", later: bool = False) -> bytes:
        """The bytes of `url`, for media read whole (images): from the cache, or fetched with `fetch()` and
        added to it. As with `pinned()`, a URL missing from the cache is fetched once however many threads and
        processes ask at the same time. No pin is taken: the file is read in one go, and a file evicted
        between the index look-up and the read is simply fetched again.

        `later=True` (a batch's row threads): the fetched bytes are added by the cache's filler thread
        (`put_later`) instead of by the caller, so a row does not wait for a file write, two fsyncs and an
        index transaction of its own; until the filler has published them, this process's readers are served
        the same bytes from memory. Another process asking in those milliseconds fetches the URL again (a
        second request, never a different file)."""
        _check_suffix(suffix)
        key = cache_key(url)
        data = self._read_cached(key)
        if data is None:
            with self._fetch_lock(key):
                data = self._read_cached(key)  # fetched by someone else while we waited?
                if data is None:
                    self._count(misses=1)
                    data = fetch()
                    if later:
                        self._pending[key] = data
                        self._hand_to_filler(url, data, suffix, move=False, written=False)
                    else:
                        self._add([(url, data, suffix)], move=False)
                    self._count(bytes_downloaded=len(data))
                    return data
        self._count(hits=1)
        if key not in self._pending:  # (a pending file gets its use time when the filler publishes it)
            with self._transaction() as conn:
                conn.execute("UPDATE entries SET last_used = ? WHERE key = ?", (_next_use_time(conn), key))
        return data

    def _read_cached(self, key: str) -> bytes | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        with self._connection() as conn:  # a read: WAL readers take no lock
            row = conn.execute("SELECT path FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return (self.directory / row[0]).read_bytes()
        except FileNotFoundError:
            return None  # evicted (or deleted) since the look-up: a miss

    def contains(self, url: str) -> bool:
        """Whether the file for `url` is in the cache now (it may be evicted right after, unless pinned)."""
        with self._connection() as conn:
            row = conn.execute("SELECT path FROM entries WHERE key = ?", (cache_key(url),)).fetchone()
        return row is not None and (self.directory / row[0]).is_file()

    def total_bytes(self) -> int:
        """Bytes of all files in the cache, as recorded in the index (pinned ones included)."""
        with self._connection() as conn:
            return _total(conn)

    def evict(self, target_bytes: int | None = None) -> int:
        """Evict least recently used unpinned files until the cache holds at most `target_bytes`.

        `target_bytes` defaults to the low-water mark (90% of the bound). Pins of processes that no longer
        exist are dropped first. Returns the number of bytes freed.
        """
        return self._evict(self.low_water_bytes if target_bytes is None else target_bytes)

    def clear(self) -> None:
        """Remove all unpinned files from the cache."""
        self._evict(0)

    def close(self) -> None:
        """Close this object's index connections (it reopens them if used again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    # --- hit, miss, unpin --------------------------------------------------------------------------

    def _pin_existing(self, key: str, token: str) -> pathlib.Path | None:
        """Pin `key` and return its path if it is cached; None on a miss."""
        with self._transaction() as conn:
            row = conn.execute("SELECT path FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            path = self.directory / row[0]
            if not path.is_file():
                # Deleted behind our back: forget it, so it is fetched again.
                _logger.debug("cache entry %s lost its file; fetching again", key)
                conn.execute("DELETE FROM entries WHERE key = ?", (key,))
                return None
            conn.execute("UPDATE entries SET last_used = ? WHERE key = ?", (_next_use_time(conn), key))
            self._insert_pin(conn, key, token)
            return path

    def _fetch_pinned(
        self, url: str, key: str, token: str, fetch: Callable[[pathlib.Path], None], suffix: str
    ) -> pathlib.Path:
        """The miss path: fetch `url` under its lock (or find it fetched by the lock's holder) and pin it."""
        with self._fetch_lock(key):
            path = self._pin_existing(key, token)
            if path is not None:
                self._count(hits=1)  # someone else fetched it while we waited
                return path
            self._count(misses=1)
            tmp = self._new_temp_path(suffix)
            try:
                fetch(tmp)
                fsutil.sync_file(tmp)  # a power cut must not leave a torn file under an index entry
                size = tmp.stat().st_size
                rel = self._relpath(key, suffix)
                with self._publishing_many() as publish:
                    conn = publish.conn
                    row = conn.execute("SELECT path FROM entries WHERE key = ?", (key,)).fetchone()
                    if row is not None:  # put() by a writer while we fetched: keep its name
                        rel = row[0]
                    conn.execute(
                        "INSERT INTO entries (key, url, path, size, last_used) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET size = excluded.size, last_used = excluded.last_used",
                        (key, redact(url), rel, size, _next_use_time(conn)),
                    )
                    self._insert_pin(conn, key, token)
                    total = _total(conn)
                    publish.move(tmp, self.directory / rel)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        self._count(bytes_downloaded=size)
        _logger.debug("cache miss %s: fetched %d bytes -> %s", url, size, rel)
        if total > self.max_bytes:
            # Our own file is pinned, so this cannot take it away from under the caller.
            self._evict(self.low_water_bytes)
        return self.directory / rel

    def _insert_pin(self, conn: sqlite3.Connection, key: str, token: str) -> None:
        me = current_process()
        conn.execute(
            "INSERT INTO pins (token, key, pid, proc_start, proc_ns) VALUES (?, ?, ?, ?, ?)",
            (token, key, me.pid, me.start, me.ns),
        )

    def _unpin(self, key: str, token: str) -> None:
        self._unpin_many([(key, token)])

    def _unpin_many(self, pins: list[tuple[str, str]]) -> None:
        # Unpinning counts as a use: a file read for a long time is not the first to go once released.
        with self._transaction() as conn:
            for key, token in pins:
                conn.execute("DELETE FROM pins WHERE token = ?", (token,))
                conn.execute("UPDATE entries SET last_used = ? WHERE key = ?", (_next_use_time(conn), key))

    # --- eviction ----------------------------------------------------------------------------------

    def _evict(self, target_bytes: int, protect: set[str] | frozenset[str] = frozenset()) -> int:
        """Evict LRU unpinned entries (never those in `protect`) until the total is at most `target_bytes`."""
        evicted: list[tuple[str, int]] = []
        with self._transaction() as conn:
            total = _total(conn)
            if total <= target_bytes:
                return 0
            self._drop_stale_pins(conn)
            candidates = conn.execute(
                "SELECT key, path, size FROM entries e"
                " WHERE NOT EXISTS (SELECT 1 FROM pins p WHERE p.key = e.key)"
                " ORDER BY last_used",
            )
            victims: list[tuple[str, str, int]] = []
            for key, rel, size in candidates:
                if total <= target_bytes:
                    break
                if key in protect:
                    continue
                victims.append((key, rel, size))
                total -= size
            candidates.close()
            for key, rel, size in victims:
                try:
                    (self.directory / rel).unlink(missing_ok=True)
                except OSError as e:
                    # E.g. open elsewhere on Windows: keep the entry, it stays accounted for.
                    _logger.debug("cannot evict %s: %s", rel, e)
                    continue
                conn.execute("DELETE FROM entries WHERE key = ?", (key,))
                evicted.append((key, size))
        freed = sum(size for _, size in evicted)
        if evicted:
            self._count(evictions=len(evicted))
            _logger.debug("cache evicted %d files, %d bytes", len(evicted), freed)
        return freed

    def _drop_stale_pins(self, conn: sqlite3.Connection) -> None:
        owners = conn.execute("SELECT DISTINCT pid, proc_start, proc_ns FROM pins").fetchall()
        for pid, start, ns in owners:
            if not pid_alive(pid, start, ns):
                _logger.debug("dropping pins of dead process %d", pid)
                conn.execute(
                    "DELETE FROM pins WHERE pid = ? AND proc_start IS ? AND proc_ns = ?", (pid, start, ns)
                )

    # --- files and locks ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _publishing_many(self) -> Iterator[_Publish]:
        """A write transaction that renames temp files into the cache (``.move(tmp, path)``, last in it).

        The renames happen while the index is write-locked, so no reader sees an entry without its file and
        no evictor sees a file without its entry. If the transaction then fails to commit, the renamed files
        are removed: the index must not miss a file (it would never be evicted), and a missing file is just
        fetched again.
        """
        publish: _Publish | None = None
        try:
            with self._transaction() as conn:
                publish = _Publish(conn)
                yield publish
        except BaseException:  # the body's error, or a failed COMMIT
            if publish is not None:
                publish.undo()
            raise
        if publish.moved:
            # Once per transaction, after it (outside the index lock): a rename lost to a power cut is only a
            # miss (an entry without its file is dropped and fetched again); the bytes were synced before.
            fsutil.sync_dir(self._files_dir)

    def _relpath(self, key: str, suffix: str) -> str:
        return f"{self._files_dir.name}/{key}{suffix}"

    def _new_temp_path(self, suffix: str) -> pathlib.Path:
        fd, path = self._new_temp_file(suffix)
        os.close(fd)
        return path

    def _new_temp_file(self, suffix: str) -> tuple[int, pathlib.Path]:
        # In the cache directory, so the final rename is atomic. The owner prefix lets a later process remove
        # what a crashed one left. The suffix is kept for fetchers that pick a format from the name.
        return fsutil.new_temp(self._tmp_dir, prefix=_temp_prefix(), suffix=suffix)

    def _remove_orphan_temp_files(self) -> None:
        # Only tmp/ is listed (small: files being written right now), never the cached files.
        me = current_process()
        ns_tag = _namespace_tag(me.ns)
        for tmp in self._tmp_dir.iterdir():
            tag, _, rest = tmp.name.partition("-")
            pid_text = rest.partition("-")[0]
            # Files of another host or container are left alone: their pids cannot be checked from here.
            if tag == ns_tag and pid_text.isdigit() and not pid_alive(int(pid_text), None, me.ns):
                _logger.debug("removing temp file %s left by dead process %s", tmp.name, pid_text)
                tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _fetch_lock(self, key: str) -> Iterator[None]:
        """Hold the lock of one URL across threads (threading.Lock) and processes (file lock)."""
        with self._key_locks_guard:
            lock, users = self._key_locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            # Lock files are shared by stripes of keys (the first hex digits): a bounded set of files instead
            # of one per URL ever cached. Two URLs of one stripe fetched at once wait for each other.
            with lock, _file_lock(self._locks_dir / f"{key[:_LOCK_STRIPE_DIGITS]}.lock"):
                yield
        finally:
            with self._key_locks_guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._key_locks[key]

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    # --- the index ---------------------------------------------------------------------------------

    def _init_index(self) -> None:
        # Switching to WAL and creating tables from several processes at once can fail with SQLITE_BUSY
        # outside the busy handler; a file lock makes the first process do it alone.
        with filelock.FileLock(self.directory / "index.db.lock"), self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != _SCHEMA_VERSION:
                conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        # WAL + NORMAL survives process crashes; only an OS crash can lose the last transactions, which for a
        # cache means refetching a file.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection from this object's pool; threads take turns, so no two use one at the same time."""
        with self._pool_lock:
            if self._pool_pid != os.getpid():
                # Forked: the parent's connections must not be used (or closed) here.
                self._pool, self._pool_pid = [], os.getpid()
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._pool_lock:
                if self._pool_pid == os.getpid():
                    self._pool.append(conn)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front (waiting up to the busy timeout); a deferred transaction
        # that later upgrades to write fails with SQLITE_BUSY at once instead of waiting.
        with _write_lock(self._db_path), self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # SQLite has already rolled back after some errors (e.g. SQLITE_FULL); a second ROLLBACK
                # would raise and hide the original error.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


class _Filler:
    """Fills the file cache from one thread per cache. Row threads hand over files (or bytes) they have
    just uploaded and go on; the filler adds whatever has queued up in one index transaction. With every row
    thread taking the cache's write lock itself, they queued behind each other (about a fifth of a batch's
    time, measured with py-spy). The queue is bounded, so memory and temp space stay bounded too. A filler
    idle for `IDLE_S` seconds exits, so that it does not keep an unused cache (and its connections) alive for
    the life of the process; the next hand-over starts another."""

    _BATCH = 32
    IDLE_S = 5.0

    def __init__(self, cache: FileCache) -> None:
        self.cache = cache
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.thread = threading.Thread(target=self._run, name="pxt-cache-filler", daemon=True)
        self.thread.start()

    def put(self, uri: str, src: pathlib.Path | bytes, suffix: str, *, move: bool, written: bool) -> None:
        """`written`: a file just uploaded (counted in `bytes_added`), not one just downloaded."""
        self.queue.put((uri, src, suffix, move, written))

    def flush(self) -> None:
        self.queue.join()

    def _idle(self) -> bool:
        """True once nothing was queued for IDLE_S seconds and this filler has let go of its cache."""
        guard = self.cache._filler_guard  # hand-overs queue under the guard: none can slip in after the check
        if not guard.acquire(blocking=False):  # (one may be holding it, waiting for room in this queue)
            return False
        try:
            if not self.queue.empty():
                return False
            if self.cache._filler is self:
                self.cache._filler = None
            return True
        finally:
            guard.release()

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=self.IDLE_S)
            except queue.Empty:
                if self._idle():
                    return
                continue
            batch = [first]
            while len(batch) < self._BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                for move in (False, True):
                    queued = [item for item in batch if item[3] is move]
                    if queued:
                        _, sizes = self.cache._add([item[:3] for item in queued], move=move)
                        # only uploads are write-through; a download added to the cache is not one
                        self.cache._count(bytes_added=sum(size for size, item in zip(sizes, queued) if item[4]))
            except Exception as e:  # noqa: BLE001 - the cache is a copy: a failed fill is logged, not fatal
                _logger.warning("could not add %d files to the file cache: %s", len(batch), e)
            finally:
                for uri, src, _, move, _ in batch:
                    if move:
                        pathlib.Path(src).unlink(missing_ok=True)
                    else:  # published (or failed): readers go to the index again
                        self.cache._pending.pop(cache_key(uri), None)
                    self.queue.task_done()


class Pin:
    """A file of a FileCache pinned for a reader (see `FileCache.pin`): `path` is not evicted by any process
    until `release()` (or the end of a `with` block). A handle dropped unreleased is released when it is
    garbage collected, on this process's unpin thread; a pin belongs to the process that took it, so a
    forked child's copy releases nothing (and a dead process's pins are dropped by the next eviction)."""

    __slots__ = ("cache", "key", "token", "path", "_pid", "_released")

    def __init__(self, cache: FileCache, key: str, token: str, path: pathlib.Path) -> None:
        self.cache, self.key, self.token, self.path = cache, key, token, path
        self._pid = os.getpid()
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Unpin now (idempotent)."""
        if not self._released:
            self._released = True
            if self._pid == os.getpid():
                self.cache._unpin(self.key, self.token)

    def __enter__(self) -> Pin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        # A finalizer may run in the middle of anything, even inside this thread's own index transaction:
        # it only queues the unpin (SimpleQueue.put is safe to call from __del__), never takes a lock.
        try:
            if not self._released and self._pid == os.getpid():
                self._released = True
                _unpinner.put((self.cache, self.key, self.token))
        except Exception:  # noqa: BLE001 - interpreter shutdown: the pin goes with the process
            pass

    def __repr__(self) -> str:
        return f"Pin({str(self.path)!r}{', released' if self._released else ''})"


class _Unpinner:
    """One thread per process that releases pins whose handles were garbage collected."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue | None = None
        self._pid: int | None = None
        self._guard = threading.Lock()

    def start(self) -> None:
        if self._pid == os.getpid():
            return
        with self._guard:
            if self._pid != os.getpid():  # first use in this process (or in a forked child)
                q: queue.SimpleQueue = queue.SimpleQueue()
                threading.Thread(target=self._run, args=(q,), name="pxt-cache-unpin", daemon=True).start()
                self._queue, self._pid = q, os.getpid()

    def put(self, item: tuple[FileCache, str, str] | threading.Event) -> bool:
        q = self._queue
        if q is None or self._pid != os.getpid():
            return False
        q.put(item)
        return True

    def after_fork(self) -> None:
        self._guard = threading.Lock()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until the unpins queued so far are done; False on timeout."""
        done = threading.Event()
        return not self.put(done) or done.wait(timeout)

    @staticmethod
    def _run(q: queue.SimpleQueue) -> None:
        while True:
            items = [q.get()]
            while True:  # whatever has queued up meanwhile: one transaction per cache
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            by_cache: dict[FileCache, list[tuple[str, str]]] = {}
            for item in items + [None]:
                if isinstance(item, tuple):
                    by_cache.setdefault(item[0], []).append(item[1:])
                    continue
                for cache, pins in by_cache.items():
                    try:
                        cache._unpin_many(pins)
                    except Exception as e:  # noqa: BLE001 - a pin left behind is dropped when this process ends
                        _logger.warning("could not release %d cache pins: %s", len(pins), e)
                by_cache.clear()
                if item is not None:
                    item.set()  # a drain() waiting for what was queued before it


_unpinner = _Unpinner()


def drain_releases(timeout: float | None = None) -> bool:
    """Wait until this process has released the pins of every `Pin` garbage collected so far (they are
    released on a background thread); False if `timeout` seconds passed first."""
    return _unpinner.drain(timeout)


class _Publish:
    """The final renames of files into the cache, undone if their transaction does not commit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.moved: list[pathlib.Path] = []

    def move(self, tmp: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
        # Synced when staged, outside the index lock; the folder is synced once after the transaction.
        fsutil.publish(tmp, dest, synced=True, sync_folder=False)
        self.moved.append(dest)
        return dest

    def undo(self) -> None:
        for dest in self.moved:
            dest.unlink(missing_ok=True)


@contextlib.contextmanager
def _file_lock(path: pathlib.Path) -> Iterator[None]:
    """An exclusive lock between processes, held on an open descriptor of `path` (created if missing).

    fcntl.flock directly where there is one: filelock 4 spends about 300 microseconds of Python per
    acquire and release (measured here, against 7 for flock), and the fetch path takes this lock for every
    file it downloads. Closing the descriptor releases the lock, so a crashed holder never leaves it taken.
    Each use opens its own descriptor, so two threads of one process exclude each other too."""
    if fcntl is None:
        with filelock.FileLock(path):
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _namespace_tag(ns: str) -> str:
    return hashlib.sha256(ns.encode()).hexdigest()[:8]


def _temp_prefix() -> str:
    me = current_process()
    return f"{_namespace_tag(me.ns)}-{me.pid}-"


def _check_suffix(suffix: str) -> None:
    if "/" in suffix or os.sep in suffix or "\0" in suffix or suffix in (".", ".."):
        raise ValueError(f"invalid cache file suffix {suffix!r}")


def _total(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()[0]


def _next_use_time(conn: sqlite3.Connection) -> float:
    # Strictly after every recorded use, so LRU order is the order of uses even when the clock is coarse or
    # steps back. Called inside a write transaction, so no other process can interleave.
    latest = conn.execute("SELECT MAX(last_used) FROM entries").fetchone()[0]
    now = time.time()
    return now if latest is None or now > latest else latest + 1e-6
