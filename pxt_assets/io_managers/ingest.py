"""Where inserted files go: the seeds' "Where do my files go?" table, decided here and nowhere else.

| config                     | local file                          | URL                                           |
| no `input_media_dest`      | store the path; no copy             | store the URL; download to cache on first use |
| local `input_media_dest`   | copy to destination                 | store the URL; download to cache on first use |
| cloud `input_media_dest`   | upload; fill cache                  | download once on insert, upload it, fill cache |
"""

from __future__ import annotations

from typing import Any

from pxt_assets import stores
from pxt_assets.evaluate import RowError, error_kind
from pxt_assets.io_managers.rows import new_record
from pxt_assets.io_managers.writers import ColumnWriter
from pxt_assets.limits import ResourceLimitError
from pxt_assets.media import ImageDecodeError, decoder_failure, open_image_header, suffix_of
from pxt_assets.redaction import redact
from pxt_assets.spec import ColumnSpec


def ingest_value(col: ColumnSpec, writer: ColumnWriter | None, rid: str, value: Any,
                 invalid: str | None = None) -> dict[str, Any]:
    """One inserted value -> its stored record. `writer` is the column's writer when it has a destination
    (input_media_dest), else None (media referenced in place). `invalid`: why the batch's manifest could not
    keep the value (see rowstore.values.manifest_row): the row's error."""
    record = new_record(rid, col.is_media, col.destination)
    if invalid is not None:
        record["error"], record["errortype"] = redact(invalid), "invalid_value"
        return record
    try:
        if value is None:
            return record
        if not col.is_media:
            record["value"] = check_scalar(col, value)
            return record
        uri = stores.normalize_uri(str(value))
        store = stores.store_for(uri)
        local = store.local_path(uri)
        if local is not None:
            if not local.is_file():
                raise RowError(f"file not found: {local}", "not_found")
            check_media_file(col, local)
            stat = local.stat()
            record["version"] = f"{stat.st_mtime_ns}:{stat.st_size}"  # a file edited in place is a new input
            if writer is not None:  # input_media_dest set: keep our own copy there
                uri = writer.copy_file(rid, local, suffix_of(uri))
                record["owned"] = True
        elif writer is not None and writer.store.remote and writer.wrote(rid, uri):
            record["owned"] = True  # uploaded by the inserting machine (a shared deployment's insert)
        elif writer is not None and writer.store.remote:
            # A URL with a cloud input_media_dest: downloaded once now, uploaded, cached.
            uri = writer.copy_remote(rid, uri, suffix_of(uri))
            record["owned"] = True
        # Otherwise a URL is stored exactly as given (query string kept) and fetched lazily through the cache.
        record["value"] = uri
        if record["version"] is None or record["owned"]:
            record["version"] = uri  # remote and copied files are immutable under their URI
    except Exception as e:  # noqa: BLE001 - a bad row is recorded, not fatal to the batch
        record["error"], record["errortype"] = redact(str(e)), error_kind(e)
        if col.is_media:
            record["value"] = None
    return record


def check_scalar(col: ColumnSpec, value: Any) -> Any:
    expected = col.col_type.python_type
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not None and not isinstance(value, expected):
        raise RowError(f"expected {col.col_type!r}, got {type(value).__name__} {value!r}", "type_error")
    return value


def check_image(path, column: str | None = None) -> None:
    """Raise a RowError (naming `column` when given, and the file) unless `path` is an image Pillow reads
    whose header is under the pixel limit (`resource_limit` otherwise): nothing is decoded."""
    prefix = f"{column}: " if column else ""
    try:
        with open_image_header(path, f"image {path}") as img:
            img.verify()
    except ResourceLimitError as e:
        raise RowError(f"{prefix}{e}", "resource_limit") from None
    except ImageDecodeError as e:
        raise RowError(f"{prefix}not a readable image: {path}: {e.why}", "decode_error") from None
    except Exception as e:  # noqa: BLE001 - whatever verify() raises (a PNG without IDAT: IndexError)
        raise RowError(f"{prefix}not a readable image: {path}: {decoder_failure(e)}", "decode_error") from None


def check_media_file(col: ColumnSpec, path) -> None:
    """A local file a media column receives must open as its type: an image Pillow reads, a video or audio
    file FFmpeg (PyAV) decodes, a PDF pypdfium2 loads or a UTF-8 text document. Otherwise the row's error
    names the column and the file (`decode_error`)."""
    kind = col.col_type.name
    if kind == "Image":
        check_image(path, col.name)
        return
    try:
        if kind in ("Video", "Audio"):
            from pxt_assets.functions.video import check_media

            check_media(str(path), kind.lower())
        elif kind == "Document":
            from pxt_assets.functions.document import check_document

            check_document(str(path))
    except ValueError as e:
        raise RowError(f"{col.name}: {e}", "decode_error") from None
    except ResourceLimitError as e:
        raise RowError(f"{col.name}: {e}", "resource_limit") from None
