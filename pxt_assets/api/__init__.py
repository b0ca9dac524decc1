"""What users call: tables (`table`), queries (`query`), the catalog's module-level calls (`catalog`) and
the Dagster definitions built from tables (`jobs`)."""

from pxt_assets.api.catalog import (
    catalog_tables,
    create_dir,
    create_table,
    create_view,
    drop_dir,
    drop_table,
    get_table,
    list_tables,
    merge_tables,
)
from pxt_assets.api.jobs import definitions
from pxt_assets.api.query import Query, ResultSet
from pxt_assets.api.table import MediaTable
from pxt_assets.api.update_status import InsertResult, RowCountStats, UpdateStatus
from pxt_assets.api.view import MediaView

__all__ = ["MediaTable", "MediaView", "create_view", "InsertResult", "UpdateStatus", "RowCountStats", "Query", "ResultSet", "definitions", "create_dir", "create_table",
           "get_table", "list_tables", "drop_table", "drop_dir", "catalog_tables", "merge_tables"]
