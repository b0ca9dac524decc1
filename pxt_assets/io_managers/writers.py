"""Column writers: how a computed (or copied) file gets its name and reaches its destination.

A writer is handed to the computing step by the media IO manager, so the destination rules stay in the IO
layer while a fused step writes several columns' files in one pass, its rows streaming through (no step holds
a batch of decoded images).
"""

from __future__ import annotations

import hashlib
import io
import logging
import pathlib
import re

import PIL.Image

from pxt_assets import fsutil, stores
from pxt_assets.cache import FileCache
from pxt_assets.faults import fault_point
from pxt_assets.media import storable, suffix_of
from pxt_assets.rowstore.journal import Journal
from pxt_assets.spec import ColumnSpec, TableSpec

_HASH_CHUNK = 1 << 20
#: a row id's batch: `<batch>-<index>` (a view's rows: `<batch>-<index>-<sub>`)
_BATCH_OF_ROW = re.compile(r"^(\d{8}T\d{6,}-[0-9a-f]{4,})-\d")
log = logging.getLogger(__name__)




class ColumnWriter:
    """Writes one column's files under its resolved destination.

    Names are deterministic per (table, column, row, content): re-running a batch rewrites the same objects
    instead of leaving orphans, different tables or columns never collide, and a changed file gets a new
    name, so no cache ever serves stale bytes under an old URL.
    """

    def __init__(self, table: TableSpec, column: ColumnSpec, cache: FileCache | None,
                 journal: Journal | None = None) -> None:
        if column.destination is None:
            raise ValueError(f"Column {column.name!r} of {table.display_path!r} has no destination")
        self.table = table
        self.column = column
        self.destination = column.destination
        # contained: a local destination's real path is resolved once, here, and no write of this writer
        # follows a symlink out of it (a link planted below it fails that row, kind 'outside_destination')
        self.store = stores.store_for(self.destination).contained(self.destination)
        self.cache = cache
        # the write-intent journal (rowstore/journal.py): each key is recorded before it is written, so gc
        # only ever collects what this database wrote
        self.journal = journal

    def _intent(self, row_id: str, uri: str) -> None:
        if self.journal is not None:
            m = _BATCH_OF_ROW.match(row_id)
            batch = m.group(1) if m else row_id
            self.journal.record_writes([(uri, self.table.slug, batch, self.column.name, self.destination)])

    def _done(self, uri: str) -> None:
        if self.journal is not None:
            self.journal.write_done(uri)

    def object_name(self, row_id: str, digest: str, ext: str) -> str:
        shard = hashlib.sha1(row_id.encode()).hexdigest()
        slug, col = self.table.slug, self.column.name
        return f"{slug}/{col}/{shard[:2]}/{shard[2:4]}/{slug}_{col}_{row_id}_{digest[:16]}{ext}"

    def delete(self, uri: str) -> None:
        """Delete a file this writer wrote (inside its destination, following no link out of it), and its
        journal entry."""
        self.store.delete(uri)
        if self.journal is not None:
            self.journal.forget_writes([uri])

    def wrote(self, row_id: str, uri: str) -> bool:
        """Whether `uri` is a name this writer gives row `row_id`'s file (written already, e.g. uploaded by
        the inserting machine in a shared deployment); a user's own file never has such a name."""
        prefix = self.store.join(self.destination, self.object_name(row_id, "", ""))
        return uri.startswith(prefix) and len(uri) > len(prefix)

    def write_image(self, row_id: str, img: PIL.Image.Image, fmt: str | None = None) -> str:
        """Encode and store a computed image (as `fmt`: 'png', 'jpeg', 'webp', 'tiff', or chosen by its mode,
        in a format that holds it: see media.storable); returns its fileurl."""
        fmt, ext, img = storable(img, fmt)
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        return self.write_bytes(row_id, buf.getvalue(), ext)

    def write_bytes(self, row_id: str, data: bytes, ext: str) -> str:
        """Store bytes produced in memory (an encoded image); returns the fileurl."""
        uri = self.store.join(self.destination, self.object_name(row_id, hashlib.sha256(data).hexdigest(), ext))
        self._intent(row_id, uri)
        fault_point("before_upload")
        self.store.write_bytes(data, uri, content_type=stores.content_type_for(uri))  # from memory: no temp file
        self._done(uri)
        fault_point("after_upload")
        if self.store.remote and self.cache is not None:
            # Write-through (see _upload_and_cache); the filler writes the bytes to the cache.
            self.cache.put_later(uri, data, suffix=suffix_of(uri))
        return uri

    def copy_file(self, row_id: str, src: pathlib.Path, ext: str) -> str:
        """Store a copy of the local file `src` (an inserted file going to input_media_dest)."""
        uri = self.store.join(self.destination, self.object_name(row_id, _file_digest(src), ext))
        self._intent(row_id, uri)
        fault_point("before_upload")
        if self.store.remote:
            self._upload_and_cache(src, uri, owned_tmp=False)
        else:
            self.store.upload(src, uri, content_type=stores.content_type_for(uri))
        self._done(uri)
        fault_point("after_upload")
        return uri

    def copy_remote(self, row_id: str, source_uri: str, ext: str) -> str:
        """Store a copy of a remote file (a URL inserted with a cloud input_media_dest): downloaded once,
        that same download uploaded and kept in the cache, so nothing is uploaded and downloaded again."""
        tmp = fsutil.scratch_file(suffix=ext)
        try:
            stores.store_for(source_uri).download(source_uri, tmp)
            uri = self.store.join(self.destination, self.object_name(row_id, _file_digest(tmp), ext))
            self._intent(row_id, uri)
            fault_point("before_upload")
            if not self.store.remote:
                self.store.upload(tmp, uri, content_type=stores.content_type_for(uri))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.store.remote:
            self._upload_and_cache(tmp, uri, owned_tmp=True)  # the cache filler takes the temp file over
        else:
            tmp.unlink(missing_ok=True)
        self._done(uri)
        fault_point("after_upload")
        return uri

    def _upload_and_cache(self, local: pathlib.Path, uri: str, *, owned_tmp: bool) -> None:
        # Write-through: the bytes just uploaded become the cached copy, so reading the column later
        # never downloads what this process already had. The cache's index is updated by one filler thread
        # (see FileCache.put_later); flush() waits for it before a step records its rows.
        try:
            self.store.upload(local, uri, content_type=stores.content_type_for(uri))
        except BaseException:
            if owned_tmp:
                local.unlink(missing_ok=True)
            raise
        if self.cache is None:
            if owned_tmp:
                local.unlink(missing_ok=True)
            return
        if owned_tmp:
            self.cache.put_later(uri, local, suffix=suffix_of(uri), move=True)
        else:
            # a user's file: copy it now, while it still holds the bytes just uploaded
            self.cache.put(uri, local, suffix=suffix_of(uri), move=False)

    def flush(self) -> None:
        """Wait until every file this process uploaded is in the cache, and its write recorded as done."""
        if self.journal is not None:
            self.journal.flush_writes()
        if self.cache is not None:
            self.cache.wait_for_puts()


def destination_of(uri: str) -> str | None:
    """The destination a file named by ColumnWriter.object_name was written under
    (`<destination>/<slug>/<col>/<aa>/<bb>/<slug>_<col>_...`), or None for any other name."""
    head, *parts = uri.rsplit("/", 5)
    if len(parts) != 5:
        return None
    slug, col, aa, bb, name = parts
    if len(aa) != 2 or len(bb) != 2 or not name.startswith(f"{slug}_{col}_"):
        return None
    return head


def delete_written(uri: str, destination: str | None = None) -> None:
    """Delete a file a ColumnWriter wrote, inside its destination (`destination`, as recorded; else the one
    its name tells): a symlink leading out of a local destination is never deleted through (StoreError,
    kind 'outside_destination')."""
    store = stores.store_for(uri)
    root = destination or destination_of(uri)
    if root is not None:
        store = store.contained(root)
    store.delete(uri)


def prune_written(uri: str, destination: str) -> None:
    """Remove the local folders deleting `uri` left empty, up to (not including) `destination`; no symlink
    is followed. Nothing for object stores (they have no folders)."""
    store = stores.store_for(uri).contained(destination)
    prune = getattr(store, "prune", None)
    if prune is not None:
        prune(uri)


def _file_digest(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
