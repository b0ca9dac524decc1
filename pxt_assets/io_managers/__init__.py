"""IO managers: where each column's row data and files go.

`TableIOManager` stores a column's row frame (row_id, value, error) per batch as Parquet. `MediaIOManager`
adds what media columns need: the destination (read from the asset's `pxt/destination` metadata, resolved
by the precedence rules when the table was defined), column writers for the computing step, the file cache,
and the UI metadata (destination, fileurls, a preview image, cache counters).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import dagster as dg
import pandas as pd
import PIL.Image

from pxt_assets import stores
from pxt_assets.cache import FileCache
from pxt_assets.config import Settings, load_settings
from pxt_assets.io_managers import destinations
from pxt_assets.io_managers.table_store import MEDIA_FRAME_COLUMNS, ROW_FRAME_COLUMNS, TableStore
from pxt_assets.io_managers.writers import ColumnWriter
from pxt_assets.media import MediaReader, shared_cache
from pxt_assets.spec import ColumnSpec, TableSpec

__all__ = ["TableIOManager", "MediaIOManager", "ColumnWriter", "TableStore", "destinations"]

META_TABLE = "pxt/table"
META_COLUMN = "pxt/column"
META_DESTINATION = "pxt/destination"

_SAMPLE_URLS = 3
_PREVIEW_PX = 96


def _table_and_column(metadata: dict[str, Any]) -> tuple[TableSpec, ColumnSpec]:
    spec = TableSpec.from_dict(metadata[META_TABLE] if isinstance(metadata[META_TABLE], dict) else metadata[META_TABLE].data)
    return spec, spec.columns[metadata[META_COLUMN]]


class TableIOManager(dg.ConfigurableIOManager):
    """Stores each (column, batch) row frame as Parquet under `$PIXELTABLE_HOME/tables`."""

    home: str | None = None  # defaults to $PIXELTABLE_HOME, read at run time

    def settings(self) -> Settings:
        return load_settings(home=self.home)

    def table_store(self) -> TableStore:
        return TableStore(self.settings().tables_dir)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        table, column = _table_and_column(context.definition_metadata)
        store = self.table_store()
        for batch in context.asset_partition_keys:
            frame = obj if len(context.asset_partition_keys) == 1 else obj[obj["row_id"].str.startswith(batch)]
            previous = store.read_column(table, column.name, batch)
            store.write_column(table, column.name, batch, frame)
            self._after_write(context, table, column, frame, previous)
        errors = int(obj["error"].notna().sum()) if len(obj) else 0
        context.add_output_metadata(
            {
                "dagster/row_count": len(obj),
                "rows": len(obj),
                "errors": errors,
                "column": f"{table.display_path}.{column.name} ({column.col_type!r})",
                **self._media_metadata(table, column, obj),
            }
        )

    def _after_write(self, context, table, column, frame, previous) -> None:
        """Hook for media columns: free files a re-run replaced."""

    def _media_metadata(self, table: TableSpec, column: ColumnSpec, frame: pd.DataFrame) -> dict[str, Any]:
        return {}

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table, column = _table_and_column(context.upstream_output.definition_metadata)
        return self.load_column(table, column.name, context.asset_partition_keys)

    def load_column(self, table: TableSpec, column: str, batches: list[str]) -> pd.DataFrame:
        store = self.table_store()
        frames = []
        for batch in batches:
            frame = store.read_column(table, column, batch)
            if frame is None:
                raise FileNotFoundError(
                    f"column {table.display_path}.{column} has not been materialized for batch {batch!r}"
                )
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROW_FRAME_COLUMNS)


class MediaIOManager(TableIOManager):
    """Row frames of media columns, plus the files: destinations, writers, cache and UI metadata."""

    def cache(self) -> FileCache:
        settings = self.settings()
        return shared_cache(settings.file_cache_dir, settings.file_cache_bytes)

    def reader(self) -> MediaReader:
        return MediaReader(self.cache())

    def writer_for(self, table: TableSpec, column: ColumnSpec) -> ColumnWriter:
        """The writer a step uses for `column`'s files: its destination as resolved at definition time,
        checked again now so a destination that vanished since fails the step before any file is written."""
        if column.destination is None:
            raise ValueError(f"Column {column.name!r} of {table.display_path!r} has no destination")
        destinations.validate(column.destination, column.name)
        return ColumnWriter(table, column, self.cache())

    def _after_write(self, context, table, column, frame, previous) -> None:
        # Re-running a batch rewrites files under deterministic names; a file whose content changed got a
        # new name, so delete the old one we wrote (never a file the user only referenced).
        if previous is None or "owned" not in previous:
            return
        keep = set(frame["value"].dropna())
        stale = previous[(previous["owned"].fillna(False).astype(bool)) & previous["value"].notna()]
        for uri in stale["value"]:
            if uri not in keep:
                try:
                    stores.store_for(uri).delete(uri)
                    context.log.info(f"{column.name}: deleted replaced file {uri}")
                except stores.StoreError as e:
                    context.log.warning(f"{column.name}: could not delete replaced file {uri}: {e}")

    def _media_metadata(self, table: TableSpec, column: ColumnSpec, frame: pd.DataFrame) -> dict[str, Any]:
        ok = frame[frame["error"].isna() & frame["value"].notna()] if len(frame) else frame
        meta: dict[str, Any] = {
            "destination": column.destination or "referenced in place",
            "destination_rule": column.destination_source or "",
            "sample_fileurls": dg.MetadataValue.json([str(u) for u in ok["value"].head(_SAMPLE_URLS)]),
            "file_cache": dg.MetadataValue.json(self.cache().stats.as_dict()),
        }
        if len(ok) and column.col_type.name == "Image":
            preview = self._preview(str(ok["value"].iloc[0]))
            if preview:
                meta["preview"] = dg.MetadataValue.md(preview)
        return meta

    def _preview(self, uri: str) -> str | None:
        # Only from bytes already on this machine: a preview must not download a lazily referenced URL.
        if stores.store_for(uri).remote and not self.cache().contains(uri):
            return None
        try:
            with self.reader().open(uri) as path, PIL.Image.open(path) as img:
                img.draft("RGB", (_PREVIEW_PX, _PREVIEW_PX))  # JPEG: decode at reduced scale, much faster
                img.thumbnail((_PREVIEW_PX, _PREVIEW_PX))
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="PNG")
        except (OSError, stores.StoreError, PIL.UnidentifiedImageError):
            return None
        return f"![preview](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def empty_frame(media: bool) -> pd.DataFrame:
    return pd.DataFrame(columns=MEDIA_FRAME_COLUMNS if media else ROW_FRAME_COLUMNS)
