"""IO managers: where each column's rows and files go.

`TableIOManager` stages a column's records (row_id, value, error, ...) for a batch in the row store, and
commits a finished batch: its rows become visible in one transaction, after every file they name is written.
Its UI metadata: row and error counts, and the first rows' errors (`sample_errors`).
`MediaIOManager` adds what media columns need: the destination (read from the asset's `pxt/destination`
metadata, resolved by the precedence rules when the table was defined), column writers for the computing
step, the file cache, and the UI metadata (destination, fileurls, a preview image, cache counters).
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import dagster as dg

from pxt_assets import rowstore, stores
from pxt_assets.cache import FileCache
from pxt_assets.config import Settings, load_settings
from pxt_assets.faults import fault_point
from pxt_assets.io_managers import destinations
from pxt_assets.io_managers.rows import count_errors
from pxt_assets.io_managers.writers import ColumnWriter, delete_written
from pxt_assets.media import MediaReader, open_image_header, shared_cache, to_rgb
from pxt_assets.redaction import redact, redact_metadata, scrubbing
from pxt_assets.spec import ColumnSpec, TableSpec

__all__ = ["TableIOManager", "MediaIOManager", "ColumnWriter", "destinations"]

META_TABLE = "pxt/table"
META_COLUMN = "pxt/column"
META_DESTINATION = "pxt/destination"

_SAMPLE_URLS = 3
_SAMPLE_ERRORS = 3
_SAMPLE_ERROR_CHARS = 500
_PREVIEW_PX = 96

Records = list[dict[str, Any]]


def _table_and_column(metadata: dict[str, Any]) -> tuple[TableSpec, ColumnSpec]:
    spec = TableSpec.from_dict(metadata[META_TABLE] if isinstance(metadata[META_TABLE], dict) else metadata[META_TABLE].data)
    return spec, spec.columns[metadata[META_COLUMN]]


def delete_replaced(log, column: str, uris: list[str], journal: rowstore.RowStore) -> None:
    """Delete files we wrote that a re-run replaced (a changed output gets a new name), and forget them in the
    write journal (unless written again meanwhile). Never a file a user only referenced: only `owned` records
    get here. One that cannot be deleted stays in the journal, for gc."""
    started = time.time()
    deleted = []
    for uri in uris:
        try:
            delete_written(uri)  # inside the destination its name tells: never through a link out of it
            log.info(f"{column}: deleted replaced file {uri}")
            deleted.append(uri)
        except stores.StoreError as e:
            log.warning(f"{column}: could not delete replaced file {uri}: {e}")
    journal.forget_writes(deleted, written_before=started)


class TableIOManager(dg.ConfigurableIOManager):
    """Stages each (column, batch)'s records in the row store; commits finished batches."""

    home: str | None = None  # defaults to $PIXELTABLE_HOME, read at run time

    def settings(self) -> Settings:
        return load_settings(home=self.home)

    def rowstore(self) -> rowstore.RowStore:
        return rowstore.for_settings(self.settings())

    def row_table(self, table: TableSpec) -> rowstore.RowTable:
        return self.rowstore().for_spec(table)

    # -- what a step does with its batch --------------------------------------------------------------
    def manifest(self, table: TableSpec, batch: str) -> Records:
        rows = self.rowstore().manifest(table.slug, batch)
        if rows is None:
            raise FileNotFoundError(
                f"table {table.display_path!r}: batch {batch!r} is not in the database "
                f"{self.rowstore()!r}; insert rows with t.insert(...) or the table's insert job"
            )
        return rows

    def start_run(self, table: TableSpec, batch: str, run_id: str) -> None:
        self.rowstore().start_run(table.slug, batch, run_id)

    def fail(self, table: TableSpec, batch: str, run_id: str, reason: str) -> None:
        """The run ends without completing the batch: it records why (a batch another run took is left alone)."""
        self.rowstore().fail_batch(table.slug, batch, run_id, redact(reason))

    def read_columns(self, table: TableSpec, batch: str, columns) -> dict[str, dict[str, dict[str, Any]]]:
        """Each column's records for `batch` by row id (staged by this run or an earlier one, else committed)."""
        return self.rowstore().read_columns(self.row_table(table), batch, columns)

    def commit(self, table: TableSpec, batch: str, log, run_id: str | None = None) -> rowstore.CommitResult:
        """Make the batch's staged columns its visible rows, in one transaction; then delete files the new
        values replaced."""
        sources = table.source_columns()
        fault_point("before_commit")
        result = self.rowstore().commit_batch(self.row_table(table), batch, run_id,
                                              rows_from=sources[0].name if sources else None)
        fault_point("after_commit")
        delete_replaced(log, table.display_path, result.replaced, self.rowstore())
        return result

    # -- Dagster --------------------------------------------------------------------------------------------
    @scrubbing  # an error Dagster stores carries no credential
    def handle_output(self, context: dg.OutputContext, obj: Records) -> None:
        table, column = _table_and_column(context.definition_metadata)
        # one batch: the assets' steps run one partition each (they read `context.partition_key`)
        try:
            replaced = self.rowstore().stage_column(self.row_table(table), context.partition_key, column.name, obj,
                                                    run_id=context.run_id)
        except Exception as e:
            self.fail(table, context.partition_key, context.run_id, f"staging column {column.name!r} failed: {e}")
            raise
        delete_replaced(context.log, column.name, replaced, self.rowstore())
        context.add_output_metadata(redact_metadata({
            "dagster/row_count": len(obj),
            "rows": len(obj),
            "errors": count_errors(obj),
            "column": f"{table.display_path}.{column.name} ({column.col_type!r})",
            **self._error_metadata(obj),
            **self._media_metadata(table, column, obj),
        }))

    @staticmethod
    def _error_metadata(records: Records) -> dict[str, Any]:
        """The first rows in error, by row id, so the UI shows why a row failed (not only how many did)."""
        failed = [r for r in records if r.get("error") is not None][:_SAMPLE_ERRORS]
        if not failed:
            return {}
        return {"sample_errors": dg.MetadataValue.json(
            {r["row_id"]: str(r["error"])[:_SAMPLE_ERROR_CHARS] for r in failed})}  # redacted with the rest

    def _media_metadata(self, table: TableSpec, column: ColumnSpec, records: Records) -> dict[str, Any]:
        return {}

    def load_input(self, context: dg.InputContext) -> Records:
        # Dagster's IOManager requires it, but no asset declares an input: a step reads its batch's rows from
        # the row store (manifest, read_columns).
        raise NotImplementedError("pxt_assets' column assets are not loaded as Dagster inputs: read the table's "
                                  "rows with its select()")


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
        return ColumnWriter(table, column, self.cache(), journal=self.rowstore())

    def _media_metadata(self, table: TableSpec, column: ColumnSpec, records: Records) -> dict[str, Any]:
        ok = [str(r["value"]) for r in records if r.get("error") is None and r.get("value") is not None]
        meta: dict[str, Any] = {
            "destination": column.destination or "referenced in place",
            "destination_rule": column.destination_source or "",
            "sample_fileurls": dg.MetadataValue.json(ok[:_SAMPLE_URLS]),  # redacted with the rest
            "file_cache": dg.MetadataValue.json(self.cache().stats.as_dict()),
        }
        if ok and column.col_type.name == "Image":
            preview = self._preview(ok[0])
            if preview:
                meta["preview"] = dg.MetadataValue.md(preview)
        return meta

    def _preview(self, uri: str) -> str | None:
        # Only from bytes already on this machine: a preview must not download a lazily referenced URL.
        if stores.store_for(uri).remote and not self.cache().contains(uri):
            return None
        try:
            with self.reader().open(uri) as path, open_image_header(path, uri) as img:  # over the limit: none
                img.draft("RGB", (_PREVIEW_PX, _PREVIEW_PX))  # JPEG: decode at reduced scale, much faster
                img.thumbnail((_PREVIEW_PX, _PREVIEW_PX))
                buf = io.BytesIO()
                to_rgb(img).save(buf, format="PNG")
        except Exception:  # noqa: BLE001 - a preview is cosmetic: an image it cannot show has none
            return None
        return f"![preview](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
