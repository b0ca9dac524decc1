"""Rows and the catalog in one SQL database, through SQLAlchemy: the only code that speaks SQL.

The database is a SQLite file under `$PIXELTABLE_HOME` by default (nothing to install or start), or the
PostgreSQL server that `[pixeltable] db_url` / `PIXELTABLE_DB_URL` names; then every process and worker that
shares the URL sees the same tables, with no shared disk. Media bytes never pass through here: a media value
is its URI.

A batch's rows become visible atomically. Steps stage each column's records for a batch (`stage_column`);
the step that finishes the batch calls `commit_batch`, which moves every staged column into the table's
rows in one transaction. Until then `count()` and queries do not see the batch, from any process; a failed
or killed batch stays staged until it is run again, and a re-run replaces what it staged (row ids are
deterministic), so nothing is duplicated.

The parts, by job: `engine` (URLs, engines, transactions, upsert), `rows` (row records, the files a value
names), `catalog` (table documents, directories, small values), `tables` (row tables' DDL), `batches`
(the batch state machine, runs writing them, staging, commit), `files` (the files rows and staged records name),
`query` (filters, orderings and selections as SQL), `watch` (what watches took), `views` (the views of a table,
from their batches), `audit` (what the invariant checks read); `schema` is the tables themselves (a column's SQL
fields are named by its id: `RowTable.field`), `migrate` moves a home of the release that kept rows in files into
the database, `column_ids` moves row tables named by column names to names by id.
"""

from __future__ import annotations

import os
import pathlib

from pxt_assets.rowstore import engine
from pxt_assets.rowstore.audit import Audit, NamedFile, SchemaDrift
from pxt_assets.rowstore.batches import ACTIVE_RUN_TTL_S, Batches, BatchInfo, BatchStateError, CommitResult
from pxt_assets.rowstore.catalog import Catalog, TableEntry
from pxt_assets.rowstore.engine import DB_FILE, default_url, redact
from pxt_assets.rowstore.files import Files
from pxt_assets.rowstore.journal import Journal, Written
from pxt_assets.rowstore.query import NotSQL, Queries
from pxt_assets.rowstore.rows import FILE_KEYS, files_named
from pxt_assets.rowstore.schema import COMMITTED, COMPUTING, CREATED, FAILED, PENDING, RowTable
from pxt_assets.rowstore.tables import TableGone, Tables, row_columns
from pxt_assets.rowstore.views import ViewOf, Views
from pxt_assets.rowstore.watch import Watches

__all__ = ["RowStore", "RowTable", "CommitResult", "BatchInfo", "TableEntry", "TableGone", "row_columns",
           "for_settings", "default_url", "redact", "NotSQL",
           "COMMITTED", "PENDING", "CREATED", "COMPUTING", "FAILED", "BatchStateError", "DB_FILE", "ACTIVE_RUN_TTL_S",
           "FILE_KEYS", "files_named", "ViewOf", "NamedFile", "SchemaDrift", "Written"]


class RowStore(Catalog, Tables, Batches, Files, Queries, Watches, Views, Audit, Journal):
    """One database: catalog, batches, staged columns and every table's rows."""


def for_settings(settings) -> RowStore:
    """The row store for `settings` (`db_url`, else SQLite under the home), one per database per process. A
    home written by the release that kept rows in Parquet files is migrated into it the first time it is
    opened."""
    url = settings.db_url or default_url(settings.home)
    pid = os.getpid()
    store = engine.STORES.get((url, pid))
    home_key = (url, str(settings.home), pid)
    if store is not None and home_key in engine.CHECKED_HOMES:
        return store
    with engine.STORES_LOCK:
        store = engine.STORES.get((url, pid))
        if store is None:
            store = engine.STORES[(url, pid)] = RowStore(url)
        if home_key not in engine.CHECKED_HOMES:
            from pxt_assets.rowstore import migrate

            migrate.migrate_home_if_needed(store, pathlib.Path(settings.home))
            engine.CHECKED_HOMES.add(home_key)
    return store
