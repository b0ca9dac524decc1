"""Names and keys of a table's Dagster objects, and the asset output of each column."""

from __future__ import annotations

from typing import Any

import dagster as dg

from pxt_assets import stores
from pxt_assets.assets import renewal
from pxt_assets.io_managers import META_COLUMN, META_DESTINATION, META_TABLE
from pxt_assets.redaction import redact, redact_metadata
from pxt_assets.spec import ColumnSpec, TableSpec

TABLE_IO = "pxt_table_io"
MEDIA_IO = "pxt_media_io"

def partitions_name(spec: TableSpec) -> str:
    return f"{spec.slug}__batches"


def batch_job_name(spec: TableSpec) -> str:
    return f"{spec.slug}__batch_job"


def insert_job_name(spec: TableSpec) -> str:
    return f"{spec.slug}_job"


def asset_key(spec: TableSpec, column: str) -> dg.AssetKey:
    return dg.AssetKey([*spec.path, column])


def column_out(spec: TableSpec, col: ColumnSpec, pdef, required: bool, automation: bool = False) -> dg.AssetOut:
    shown: dict[str, Any] = {}
    if col.writes_files:
        shown[META_DESTINATION] = col.destination or "referenced in place"
    if col.expr is not None:
        shown["expression"] = repr(col.expr)
    shown.update(renewal.definition_metadata(col))
    # the table's spec is read back by the IO managers as it is; what is shown is redacted
    metadata: dict[str, Any] = {META_TABLE: spec.to_dict(), META_COLUMN: col.name, **redact_metadata(shown)}
    kinds = {"pxt", col.col_type.name.lower()}
    if col.destination:
        kinds.add(stores.store_for(col.destination).provider)
    return dg.AssetOut(
        key=asset_key(spec, col.name),
        io_manager_key=MEDIA_IO if col.is_media else TABLE_IO,
        is_required=required,
        group_name=spec.slug,
        metadata=metadata,
        kinds=kinds,
        code_version=col.expr.code_version(loaded=False) if col.expr is not None else "source",
        # eager: a new batch's columns follow its source; a column added later is not backfilled on its own;
        # a column of presigned URLs is also renewed on a schedule (renewal.py)
        automation_condition=renewal.automation_condition(col, automation),
        description=redact(f"{spec.display_path}.{col.name} = {col.expr!r}" if col.expr is not None
                           else f"{spec.display_path}.{col.name}: inserted {col.col_type!r} values"),
    )
