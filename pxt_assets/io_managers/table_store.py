"""Where a table's row data lives: one Parquet file per (column, batch), plus one manifest per batch.

    $PIXELTABLE_HOME/tables/<dir>/<name>/_batches/<batch>.json     what was inserted in that batch
    $PIXELTABLE_HOME/tables/<dir>/<name>/<column>/<batch>.parquet   row_id, value, error, ... per row

Row data is small (URIs and scalars); media bytes never pass through here.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import tempfile
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from pxt_assets.spec import TableSpec

# version: for inserted media, the identity of the stored file (so a changed file is noticed); for computed
# values, a fingerprint of the expression and of every input it read (so unchanged rows can be skipped).
ROW_FRAME_COLUMNS = ["row_id", "value", "error", "errortype", "version"]
MEDIA_FRAME_COLUMNS = ROW_FRAME_COLUMNS + ["destination", "owned"]


def new_batch_key() -> str:
    """Short, path-safe and sortable by creation time: '20261122T211640123456-3fa9'."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(2)


def row_id(batch: str, index: int) -> str:
    return f"{batch}-{index:06d}"


def _atomic_write(path: pathlib.Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


class TableStore:
    """Reads and writes row data under one tables directory."""

    def __init__(self, tables_dir: pathlib.Path) -> None:
        self.tables_dir = pathlib.Path(tables_dir)

    def table_dir(self, spec: TableSpec) -> pathlib.Path:
        return self.tables_dir.joinpath(*spec.path)

    # -- batches ----------------------------------------------------------------------------------------
    def manifest_path(self, spec: TableSpec, batch: str) -> pathlib.Path:
        return self.table_dir(spec) / "_batches" / f"{batch}.json"

    def write_manifest(self, spec: TableSpec, batch: str, rows: list[dict[str, Any]], **extra: Any) -> None:
        doc = {"table": spec.display_path, "batch": batch, "rows": rows, **extra}
        _atomic_write(self.manifest_path(spec, batch), lambda tmp: pathlib.Path(tmp).write_text(json.dumps(doc)))

    def read_manifest(self, spec: TableSpec, batch: str) -> dict[str, Any]:
        path = self.manifest_path(spec, batch)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"table {spec.display_path!r}: batch {batch!r} has no manifest at {path}; "
                "insert rows with media.insert(...) or the table's insert job"
            ) from None

    def batches(self, spec: TableSpec) -> list[str]:
        """Batch keys with a manifest, oldest first."""
        folder = self.table_dir(spec) / "_batches"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    # -- column frames ----------------------------------------------------------------------------------
    def column_path(self, spec: TableSpec, column: str, batch: str) -> pathlib.Path:
        return self.table_dir(spec) / column / f"{batch}.parquet"

    def write_column(self, spec: TableSpec, column: str, batch: str, frame: pd.DataFrame) -> pathlib.Path:
        path = self.column_path(spec, column, batch)
        _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return path

    def read_column(self, spec: TableSpec, column: str, batch: str) -> pd.DataFrame | None:
        path = self.column_path(spec, column, batch)
        if not path.is_file():
            return None
        # use_threads=False: pyarrow's reader thread pool can abort the interpreter at exit ("terminate
        # called without an active exception"); row frames are small, threads buy nothing here.
        return pd.read_parquet(path, use_threads=False)

    def materialized_batches(self, spec: TableSpec, column: str) -> list[str]:
        folder = self.table_dir(spec) / column
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []
