"""Lifecycle: deleting batches, columns and tables, and collecting files no row refers to.

Every file the project wrote is recorded in its row frame (value = URI, owned = True, destination), so
deletes use the recorded locations, whatever the configuration says now. Files a user only referenced
(owned = False) are never deleted.
"""

from __future__ import annotations

import dagster as dg

from pxt_assets import assets as asset_builder


def delete_batch(table, batch: str, *, instance: dg.DagsterInstance | None = None) -> int:
    """See MediaTable.delete."""
    from pxt_assets import stores

    store = table.table_store()
    deleted = 0
    # Files first, rows after: if a delete fails, the rows still say where the remaining files are.
    for col in table.spec.columns.values():
        frame = store.read_column(table.spec, col.name, batch)
        if frame is not None and "owned" in frame:
            for uri in frame.loc[frame["owned"].fillna(False).astype(bool), "value"].dropna():
                stores.store_for(uri).delete(uri)
                deleted += 1
    for col in table.spec.columns.values():
        store.column_path(table.spec, col.name, batch).unlink(missing_ok=True)
    store.manifest_path(table.spec, batch).unlink(missing_ok=True)
    if instance is None:
        from pxt_assets.instance import get_instance

        instance = get_instance()
    name = asset_builder.partitions_name(table.spec)
    if instance.has_dynamic_partition(name, batch):
        instance.delete_dynamic_partition(name, batch)
    return deleted


def drop_column(table, name: str, *, instance: dg.DagsterInstance | None = None) -> int:
    raise NotImplementedError("drop_column: see issue #4")
