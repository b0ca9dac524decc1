"""Local files: plain paths and file:// URLs."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator

from pxt_assets.stores.base import ObjectStore, StoreError


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
        except PermissionError:
            raise StoreError(f"permission denied reading {src}", kind="access_denied") from None

    def upload(self, src: pathlib.Path, uri: str, *, content_type: str | None = None) -> None:
        # Copy to a temp file beside the target, then rename: a reader never sees half a file, and a
        # re-run of the same batch replaces the file instead of leaving a second one.
        dest = path_of(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise

    def write_bytes(self, data: bytes, uri: str) -> None:
        """Atomically write `data` at `uri` (no intermediate copy)."""
        dest = path_of(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, uri: str) -> bool:
        return path_of(uri).is_file()

    def delete(self, uri: str) -> None:
        path_of(uri).unlink(missing_ok=True)

    def list(self, prefix_uri: str) -> Iterator[str]:
        root = path_of(prefix_uri)
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file() and not p.name.startswith(".tmp-"):
                    yield file_url(p)

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

    def local_path(self, uri: str) -> pathlib.Path | None:
        return path_of(uri)

    def presign(self, uri: str, expiration_seconds: int) -> str:
        raise StoreError(
            f"Cannot generate presigned URL for local file:// URLs ({uri}): presigned URLs need cloud storage "
            "(S3, GCS, Azure, R2, B2, Tigris); set a cloud destination for the column", kind="local_file"
        )
