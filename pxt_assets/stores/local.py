"""Local files: plain paths and file:// URLs."""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator

from pxt_assets import fsutil
from pxt_assets.faults import fault_point
from pxt_assets.stores.base import ObjectInfo, ObjectStore, StoreError, check_page_size

log = logging.getLogger(__name__)


def path_of(uri: str) -> pathlib.Path:
    """The filesystem path a plain path or file:// URL names (percent-decoded)."""
    if uri.startswith("file:"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise StoreError(f"file:// URL with a remote host is not supported: {uri}", kind="unsupported")
        return pathlib.Path(urllib.request.url2pathname(parsed.path))
    return pathlib.Path(uri).expanduser()


def file_url(path: str | os.PathLike) -> str:
    """The file:// URL of a local path (absolute, percent-encoded), as `.fileurl` reports local files."""
    return pathlib.Path(path).absolute().as_uri()


temp_prefix = fsutil.temp_prefix  # files being written: `.tmp-<name>-<random>` beside their target


def temp_target(name: str) -> str | None:
    """The name of the file a temporary file (`temp_prefix`) was to become, or None for any other name."""
    if not name.startswith(".tmp-") or "-" not in name[5:]:
        return None
    return name[5:].rsplit("-", 1)[0]


class LocalStore(ObjectStore):
    provider = "local"
    writable = True
    remote = False

    def download(self, uri: str, dest: pathlib.Path) -> None:
        src = path_of(uri)
        try:
            shutil.copyfile(src, dest)
        except FileNotFoundError:
            raise StoreError(f"file not found: {src}", kind="not_found") from None
        except IsADirectoryError:
            raise StoreError(f"{src} is a folder, not a file", kind="invalid") from None
        except PermissionError:
            raise StoreError(f"permission denied reading {src}", kind="access_denied") from None

    def upload(self, src: pathlib.Path, uri: str, *, content_type: str | None = None) -> None:
        # Copied to a temp file beside the target (`.tmp-<name>-<random>`), synced, then renamed (fsutil): a
        # reader never sees half a file, a power cut never leaves one, and a re-run of the same batch replaces
        # the file instead of leaving a second one.
        def copy(tmp: pathlib.Path) -> None:
            shutil.copyfile(src, tmp)
            fault_point("mid_upload")

        fsutil.atomic_write(path_of(uri), copy)

    def read_bytes(self, uri: str) -> bytes:
        src = path_of(uri)
        try:
            return src.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"file not found: {src}", kind="not_found") from None
        except IsADirectoryError:
            raise StoreError(f"{src} is a folder, not a file", kind="invalid") from None
        except PermissionError:
            raise StoreError(f"permission denied reading {src}", kind="access_denied") from None

    def write_bytes(self, data: bytes, uri: str, *, content_type: str | None = None) -> None:
        """Atomically and durably write `data` at `uri` (no intermediate copy)."""
        def write(tmp: pathlib.Path) -> None:
            with open(tmp, "wb") as f:
                f.write(data)
            fault_point("mid_upload")

        fsutil.atomic_write(path_of(uri), write)

    def exists(self, uri: str) -> bool:
        return path_of(uri).is_file()

    def delete(self, uri: str) -> None:
        path_of(uri).unlink(missing_ok=True)

    def stat(self, uri: str) -> ObjectInfo | None:
        try:
            st = path_of(uri).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectInfo(uri=uri, mtime=st.st_mtime_ns / 1e9, size=st.st_size, etag=f"{st.st_ino}-{st.st_mtime_ns}")

    def list_objects(self, prefix_uri: str, *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """Files below the folder `prefix_uri` (a path or file:// URL, with or without a trailing slash).

        Yields file:// URLs in lexicographic order of their path below the folder (as S3 orders keys), walking
        one directory at a time. Hidden files and folders (names starting with '.', which includes our
        `.tmp-*` files of writes in progress) are skipped; symlinked files are listed, symlinked folders
        not followed. `page_size` is accepted for symmetry and ignored. A folder that does not exist raises
        kind 'not_found', at the call.
        """
        check_page_size(page_size)
        root = path_of(prefix_uri).absolute()
        if not root.exists():
            raise StoreError(f"local folder {str(root)!r} does not exist (listing {prefix_uri})",
                             kind="not_found")
        if not root.is_dir():
            raise StoreError(f"{str(root)!r} is not a folder (listing {prefix_uri})", kind="invalid")
        return self._walk(root, prefix_uri)

    def list_temp_files(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        """The temporary files of writes below the folder `prefix_uri`, in progress or left by a process killed
        while writing (list_objects skips them); `temp_target` names the file each was to become."""
        for path in path_of(prefix_uri).absolute().rglob(".tmp-*"):
            try:
                st = path.stat()
            except FileNotFoundError:  # renamed into place meanwhile
                continue
            yield ObjectInfo(uri=file_url(path), mtime=st.st_mtime_ns / 1e9, size=st.st_size)

    def list(self, prefix_uri: str) -> Iterator[str]:
        """file:// URLs of the files below `prefix_uri`; nothing (not an error) when it is not a folder."""
        if not path_of(prefix_uri).is_dir():
            return iter(())
        return super().list(prefix_uri)

    @staticmethod
    def _walk(root: pathlib.Path, prefix_uri: str) -> Iterator[ObjectInfo]:
        stack = [iter(_sorted_entries(root, prefix_uri, is_root=True))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            if _is_dir(entry):
                stack.append(iter(_sorted_entries(entry.path, prefix_uri)))
                continue
            try:
                if not entry.is_file():  # sockets, fifos, broken symlinks
                    continue
                st = entry.stat()
            except FileNotFoundError:  # removed since the folder was read
                continue
            yield ObjectInfo(uri=file_url(entry.path), mtime=st.st_mtime_ns / 1e9, size=st.st_size)

    def contained(self, root_uri: str) -> ContainedLocalStore:
        """A view of this store whose writes and deletes stay inside the folder `root_uri` (its real path
        resolved now, once): see ContainedLocalStore."""
        return ContainedLocalStore(root_uri)

    def validate_destination(self, uri: str) -> None:
        path = path_of(uri)
        if not path.is_absolute():
            raise StoreError(f"local destination must be an absolute path, got {uri!r}", kind="invalid")
        if not path.exists():
            raise StoreError(f"local directory {str(path)!r} does not exist", kind="not_found")
        if not path.is_dir():
            raise StoreError(f"{str(path)!r} is not a directory", kind="invalid")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"local directory {str(path)!r} is not writable", kind="access_denied")

    def join(self, prefix_uri: str, name: str) -> str:
        return file_url(path_of(prefix_uri) / name)

    def canonical(self, uri: str) -> str:
        return "file:" + os.path.realpath(path_of(uri))

    def local_path(self, uri: str) -> pathlib.Path | None:
        return path_of(uri)

    def presign(self, uri: str, expiration_seconds: int) -> str:
        raise StoreError(
            f"Cannot generate presigned URL for local file:// URLs ({uri}): presigned URLs need cloud storage "
            "(S3, GCS, Azure, R2, B2, Tigris); set a cloud destination for the column", kind="local_file"
        )


class ContainedLocalStore(LocalStore):
    """The local store, writing and deleting only inside one destination folder. Its real path is resolved
    once, when the view is made; below it, folders are made and opened one at a time without following a
    symbolic link (O_NOFOLLOW, relative to the folder above), and files are created (O_EXCL | O_NOFOLLOW) and
    renamed into place in the folder opened. A link planted on the way (`<dest>/<table>` -> /elsewhere) makes
    the write or delete fail with kind 'outside_destination', naming the link: nothing is written, and
    nothing deleted, outside the destination. Reads are the local store's."""

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri
        self.root = path_of(root_uri).absolute()
        self.root_real = os.path.realpath(self.root)

    def _outside(self, doing: str, uri: str, e: OSError) -> StoreError:
        return StoreError(f"cannot {doing} {uri}: {e.strerror or e} (destination {self.root_uri}); nothing "
                          "outside the destination is touched", kind="outside_destination")

    def _write(self, uri: str, data) -> None:  # noqa: ANN001
        try:
            fsutil.atomic_write_within(self.root, self.root_real, path_of(uri), data)
        except fsutil.OutsideRoot as e:
            raise self._outside("write", uri, e) from None

    def upload(self, src: pathlib.Path, uri: str, *, content_type: str | None = None) -> None:
        def copy(f) -> None:  # noqa: ANN001
            with open(src, "rb") as s:
                shutil.copyfileobj(s, f, 1 << 20)
            fault_point("mid_upload")

        self._write(uri, copy)

    def write_bytes(self, data: bytes, uri: str, *, content_type: str | None = None) -> None:
        def write(f) -> None:  # noqa: ANN001
            f.write(data)
            fault_point("mid_upload")

        self._write(uri, write)

    def delete(self, uri: str) -> None:
        try:
            fsutil.unlink_within(self.root, self.root_real, path_of(uri))
        except fsutil.OutsideRoot as e:
            raise StoreError(f"cannot delete {uri}: {e.strerror or e} (destination {self.root_uri}); what the "
                             "link leads to is not deleted: remove the link (or put back the folder it "
                             "replaced) and delete again", kind="outside_destination") from None

    def prune(self, uri: str) -> None:
        """Remove the folders deleting `uri` left empty, up to (not including) the destination."""
        fsutil.prune_within(self.root, self.root_real, path_of(uri).parent)

    def contained(self, root_uri: str) -> ContainedLocalStore:
        return self if root_uri == self.root_uri else ContainedLocalStore(root_uri)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _sorted_entries(folder: str | os.PathLike, prefix_uri: str, *,
                    is_root: bool = False) -> list[os.DirEntry]:
    """The visible entries of one folder, sorted so that a depth-first walk yields paths in lexicographic
    order: a folder sorts as its name plus '/', as its files' keys would (so "a.txt" < "a/x" < "a0")."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(".")]
    except FileNotFoundError:
        if is_root:
            raise StoreError(f"local folder {os.fspath(folder)!r} does not exist (listing {prefix_uri})",
                             kind="not_found") from None
        return []  # removed while the walk was under way
    except PermissionError:
        if is_root:
            raise StoreError(f"permission denied listing {os.fspath(folder)!r} ({prefix_uri})",
                             kind="access_denied") from None
        log.warning("listing %s: skipping %s (permission denied)", prefix_uri, os.fspath(folder))
        return []
    entries.sort(key=lambda e: e.name + "/" if _is_dir(e) else e.name)
    return entries
