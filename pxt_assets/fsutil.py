"""Durable local writes: every file pxt_assets writes on this machine goes through here.

A file is written to a temp file with a unique name (``mkstemp``) in the folder it is going to, flushed to
disk (``fsync``), renamed over the target (``os.replace``, atomic on POSIX and Windows), and then the folder
itself is flushed, so that the rename survives a power cut too. A reader therefore sees the old file or the
new one, never half of one, and a writer that fails (or is killed) leaves the old file as it was; a temp
file it leaves behind is hidden (``.tmp-`` prefix: listings skip it) and never in the way of a later write,
because no two writes share a temp name.

``atomic_file(path)`` and ``atomic_write(path, data)`` are what callers use; ``publish`` and ``sync_dir`` are
the primitives, for the file cache, which stages its files in a folder of its own and renames them into
place inside an index transaction. Folders created on the way (``make_dirs``) are flushed into their
parents, so a new file's path survives as well as its bytes.

Scratch files (a download on its way to a bucket, an audio segment before it is uploaded) are not published
anywhere and need no fsync: ``scratch_file()`` gives each a unique name.

``setup_lock(folder)`` is the lock file under which processes set up the SQLite databases of a folder one at
a time (the row store's `pxt.db`, the Dagster instance's).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import filelock

#: the prefix of temp files being written beside their target: hidden, and skipped by LocalStore listings
TEMP_PREFIX = ".tmp-"

Data = bytes | bytearray | memoryview | str | Callable[[pathlib.Path], Any]

#: the lock file of setup_lock, in the folder whose databases it guards
SETUP_LOCK = ".pxt-setup.lock"
#: how long a process waits for another to set a folder up (a new Dagster instance takes about a second)
SETUP_LOCK_TIMEOUT_S = 600


@contextlib.contextmanager
def setup_lock(folder: str | os.PathLike) -> Iterator[None]:
    """The cross-process lock (a lock file in `folder`, created with it) that a process holds while it opens
    the SQLite databases of `folder` and, the first time, sets them up: creates their tables, switches them
    to WAL, stamps or records their schema version. Each of those is a check then a write, or needs the
    database to itself, and processes starting on a new home at once would otherwise do them together. A
    process holds it for the checks alone once the folder is set up."""
    make_dirs(folder)
    lock = filelock.FileLock(os.path.join(folder, SETUP_LOCK), timeout=SETUP_LOCK_TIMEOUT_S)
    # polled every 5 ms (filelock's default is 50): the processes waiting on a set-up folder each hold it briefly
    with lock.acquire(poll_interval=0.005):
        yield


def temp_prefix(name: str) -> str:
    """Files being written get a hidden name beside their target: `.tmp-<name>-<random>`. A write killed
    midway leaves it; the name it was to get says whose it is (see stores.local.temp_target, used by gc)."""
    return f"{TEMP_PREFIX}{name}-"


def new_temp(folder: str | os.PathLike, *, prefix: str = TEMP_PREFIX, suffix: str = "") -> tuple[int, pathlib.Path]:
    """A new empty file with a unique name in `folder` (mkstemp: created exclusively, mode 0600); returns its
    open descriptor and path. The only place pxt_assets makes up a temp name."""
    fd, name = tempfile.mkstemp(dir=os.fspath(folder), prefix=prefix, suffix=suffix)
    return fd, pathlib.Path(name)


def scratch_file(*, suffix: str = "", prefix: str = "pxt-", folder: str | os.PathLike | None = None) -> pathlib.Path:
    """A new empty scratch file (in the system temp folder unless `folder` is given), closed. The caller
    deletes it; it is never published, so it is not synced."""
    fd, path = new_temp(folder if folder is not None else tempfile.gettempdir(), prefix=prefix, suffix=suffix)
    os.close(fd)
    return path


def sync_file(target: int | str | os.PathLike) -> None:
    """Flush a file's bytes to disk (an open descriptor, or a path that is opened for it)."""
    if isinstance(target, int):
        os.fsync(target)
        return
    # Windows' FlushFileBuffers needs a handle open for writing; POSIX takes any descriptor.
    fd = os.open(target, os.O_RDWR if sys.platform == "win32" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk. A no-op where folders cannot be opened
    (Windows: NTFS makes the rename durable with the file's metadata)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):
        return  # Windows
    try:
        os.fsync(fd)
    except OSError as e:
        # Some filesystems (certain network mounts) do not support fsync on a folder: nothing more to do.
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def make_dirs(folder: str | os.PathLike) -> pathlib.Path:
    """`mkdir -p folder`, flushing each folder it creates into its parent so the path survives a power cut.
    Safe against another process creating the same folders at the same time."""
    folder = pathlib.Path(folder)
    missing: list[pathlib.Path] = []
    p = folder
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
            continue  # made by someone else, who syncs it
        sync_dir(d.parent)
    return folder


def publish(tmp: str | os.PathLike, dest: str | os.PathLike, *, replace: bool = True, synced: bool = False,
            sync_folder: bool = True) -> bool:
    """Move the finished temp file `tmp` to `dest` (same filesystem): fsync it (unless `synced`), rename it
    over `dest` (or, with `replace=False`, link it into place only if `dest` does not exist yet, and remove
    the temp), then fsync `dest`'s folder (unless `sync_folder=False`, for a caller that syncs it once for
    many files). Returns False only when `replace=False` found `dest` there (the temp is removed then)."""
    if not synced:
        sync_file(tmp)
    if replace:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)  # atomic, and fails rather than clobber: first writer wins
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    if sync_folder:
        sync_dir(pathlib.Path(dest).parent)
    return True


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", *, replace: bool = True,
                suffix: str | None = None, encoding: str | None = None) -> Iterator[IO[Any]]:
    """Write `path` atomically and durably: yields a file object open on a temp file beside it; when the
    block ends normally the file is flushed, synced and renamed over `path` (see `publish`). If the block
    raises, the temp file is removed and `path` is untouched. `mode` is "wb" or "w" (text, `encoding`
    default UTF-8). `suffix` is the temp file's (default: `path`'s, for writers that pick a format by name).
    With `replace=False` an existing `path` is kept and the new content dropped (see `atomic_write`)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes whole files: mode 'wb' or 'w', not {mode!r}")
    dest = pathlib.Path(path)
    fd, tmp = _temp_beside(dest, suffix)
    try:
        with open(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, dest, replace=replace, synced=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: Data, *, replace: bool = True, suffix: str | None = None) -> bool:
    """Write `path` atomically and durably (see the module docstring). `data` is bytes, a str (UTF-8), or a
    callable that writes the file at the temp path it is given (a copy, an encoder that takes a file name).
    With `replace=False`, an existing `path` is left as it is and False returned (first writer wins);
    otherwise returns True."""
    dest = pathlib.Path(path)
    fd, tmp = _temp_beside(dest, suffix)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with open(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        return publish(tmp, dest, replace=replace)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temp_beside(dest: pathlib.Path, suffix: str | None) -> tuple[int, pathlib.Path]:
    """A temp file in `dest`'s folder (created if missing) with the permissions a new file gets from the
    umask (mkstemp's are 0600), or those of the file it replaces."""
    make_dirs(dest.parent)
    fd, tmp = new_temp(dest.parent, prefix=temp_prefix(dest.name), suffix=dest.suffix if suffix is None else suffix)
    if hasattr(os, "fchmod"):
        try:
            mode = dest.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
    return fd, tmp


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        try:  # Linux: read it without changing it (os.umask sets it, for every thread at once)
            status = pathlib.Path("/proc/self/status").read_text()
            _UMASK = int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)  # type: ignore[union-attr]
        except (OSError, AttributeError):
            _UMASK = 0o022
    return _UMASK


# ---------------------------------------------------------------------------------------------------------
# writes and deletes contained in a folder: no symlink below it is ever followed


class OutsideRoot(OSError):
    """A path below a contained root that would leave it: `..`, or a symlink (or another non-folder) where a
    folder is expected on the way. Nothing was written or deleted."""


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: whether this platform opens, creates, renames and deletes relative to a folder descriptor (POSIX)
CONTAINED_BY_FD = bool(_NOFOLLOW) and {os.open, os.mkdir, os.rename, os.unlink, os.rmdir, os.stat} <= os.supports_dir_fd


def _rel_parts(root: pathlib.Path, path: pathlib.Path) -> list[str]:
    """`path`'s components below `root` (both absolute, compared as spelled); OutsideRoot if it is not below."""
    try:
        rel = pathlib.PurePath(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        raise OutsideRoot(errno.EXDEV, f"{path} is not inside {root}") from None
    parts = list(rel.parts)
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise OutsideRoot(errno.EXDEV, f"{path} is not a file inside {root}")
    return parts


def _refuse_entry(dir_fd: int, name: str, shown: pathlib.Path) -> OutsideRoot:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return OutsideRoot(errno.ENOTDIR, f"{shown} is not a folder")
    return OutsideRoot(errno.ELOOP, f"{shown} is a symbolic link (to {target}); no link below a destination is "
                                    "followed")


@contextlib.contextmanager
def _folder_within(root_real: str, parts: list[str], *, create: bool) -> Iterator[int]:
    """An open descriptor of the folder `root_real`/`parts`, each folder on the way opened without following a
    symlink (made when missing, with `create`, and flushed into its parent). `root_real` is a real path,
    resolved once by the caller: if it was replaced by a symlink since, OutsideRoot."""
    try:
        fd = os.open(root_real, _DIR_FLAGS | _NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OutsideRoot(e.errno, f"{root_real} is no longer a folder (a symbolic link?)") from None
        raise
    shown = pathlib.Path(root_real)
    try:
        for name in parts:
            shown = shown / name
            try:
                child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, dir_fd=fd)
                    os.fsync(fd)
                except FileExistsError:
                    pass  # made by someone else meanwhile
                try:
                    child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _refuse_entry(fd, name, shown) from None
                    raise
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse_entry(fd, name, shown) from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _check_real_parent(root_real: str, path: pathlib.Path) -> None:
    """Where folders cannot be opened relative to one another (Windows): the real path of `path`'s folder
    must be inside `root_real`, checked before the write (and nothing below the root may be a symlink)."""
    parent = os.path.realpath(path.parent)
    if parent != root_real and not parent.startswith(root_real.rstrip(os.sep) + os.sep):
        raise OutsideRoot(errno.ELOOP, f"{path.parent} leads outside {root_real} (through a symbolic link)")


def atomic_write_within(root: str | os.PathLike, root_real: str, path: str | os.PathLike,
                        data: bytes | Callable[[IO[bytes]], Any]) -> None:
    """`atomic_write(path, data)` for a `path` inside the folder `root` (whose real path, resolved once,
    is `root_real`): the folders on the way are made and opened without following any symlink, the temp
    file is created exclusively (O_NOFOLLOW) and renamed into place in the folder opened, so nothing is
    ever written outside `root_real`, whatever links appear below it. OutsideRoot if the path leaves it.
    `data` is bytes, or a callable that writes the temp file through the binary file object it is given."""
    root, path = pathlib.Path(root), pathlib.Path(path)
    parts = _rel_parts(root, path)
    if not CONTAINED_BY_FD:  # pragma: no cover - Windows
        _check_real_parent(root_real, pathlib.Path(root_real).joinpath(*parts))
        make_dirs(pathlib.Path(root_real).joinpath(*parts[:-1]))
        _check_real_parent(root_real, pathlib.Path(root_real).joinpath(*parts))

        def write(tmp: pathlib.Path) -> None:
            with open(tmp, "wb") as f:
                data(f) if callable(data) else f.write(data)

        atomic_write(pathlib.Path(root_real).joinpath(*parts), write)
        return
    name = parts[-1]
    with _folder_within(root_real, parts[:-1], create=True) as dir_fd:
        prefix, suffix = temp_prefix(name), pathlib.PurePath(name).suffix
        for _ in range(tempfile.TMP_MAX):
            tmp = f"{prefix}{secrets.token_hex(4)}{suffix}"  # as mkstemp's: `.tmp-<name>-<8 random><suffix>`
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                             0o600, dir_fd=dir_fd)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise FileExistsError(errno.EEXIST, f"no free temp name in {path.parent}")
        try:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                mode = 0o666 & ~_umask() if stat.S_ISLNK(st.st_mode) else st.st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            with open(fd, "wb", closefd=False) as f:
                if callable(data):
                    data(f)
                else:
                    f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.close(fd)
            fd = -1
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # a symlink named `name` is replaced
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)


def unlink_within(root: str | os.PathLike, root_real: str, path: str | os.PathLike) -> bool:
    """Delete the file `path` inside the folder `root` (real path `root_real`), following no symlink on the
    way: a link where a folder is expected is OutsideRoot (nothing deleted); a link in the file's place is
    removed itself, never what it points to. Returns False when there was nothing to delete."""
    root, path = pathlib.Path(root), pathlib.Path(path)
    parts = _rel_parts(root, path)
    if not CONTAINED_BY_FD:  # pragma: no cover - Windows
        _check_real_parent(root_real, pathlib.Path(root_real).joinpath(*parts))
        try:
            pathlib.Path(root_real).joinpath(*parts).unlink()
        except FileNotFoundError:
            return False
        return True
    try:
        with _folder_within(root_real, parts[:-1], create=False) as dir_fd:
            os.unlink(parts[-1], dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def prune_within(root: str | os.PathLike, root_real: str, folder: str | os.PathLike) -> None:
    """Remove `folder` (inside `root`) and then each parent up to, not including, `root`, while they are empty;
    no symlink on the way is followed (a link stops the pruning)."""
    root, folder = pathlib.Path(root), pathlib.Path(folder)
    try:
        parts = _rel_parts(root, folder)
    except OutsideRoot:
        return
    while parts:
        try:
            if CONTAINED_BY_FD:
                with _folder_within(root_real, parts[:-1], create=False) as dir_fd:
                    os.rmdir(parts[-1], dir_fd=dir_fd)
            else:  # pragma: no cover - Windows
                target = pathlib.Path(root_real).joinpath(*parts)
                _check_real_parent(root_real, target)
                if target.is_symlink():
                    return
                target.rmdir()
        except OSError:  # not empty, gone, or a link on the way: stop here
            return
        parts.pop()


def copy_file(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy `src` to `dest` atomically and durably."""
    import shutil

    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


__all__ = ["TEMP_PREFIX", "temp_prefix", "new_temp", "scratch_file", "sync_file", "sync_dir", "make_dirs", "publish",
           "atomic_file", "atomic_write", "copy_file", "OutsideRoot", "atomic_write_within", "unlink_within",
           "prune_within"]
