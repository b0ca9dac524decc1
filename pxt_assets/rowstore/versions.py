"""The row store's schema versions: every change to the tables of an existing database is one numbered step.

A database records the version of its schema (the row `schema_version` of `pxt_kv`). Opening it
(`engine.Database`) compares that with `CURRENT`, the number of steps below:

- equal, with every table of `schema.py` there: nothing to do, and no lock is taken;
- a new database: every table is created as `schema.py` defines it now, and the version recorded is CURRENT
  (no step runs: the tables already have the shape the steps lead to);
- older (a database from before versions were recorded counts as 0): in one transaction, under the schema
  lock (PostgreSQL's advisory lock `schema`; SQLite's write lock), the tables it lacks are created, then
  each step above its version runs in turn and the recorded version follows each step. Every process opening
  the database at once waits for the lock and then finds the steps done: each step runs once per database.
  A step that fails rolls the whole transaction back (DDL is transactional on both databases): the database
  is left as it was, and the next open runs the steps again;
- newer (written by a later release): refused, with the two versions named.

Adding a step (docs/layout.md, "where a new thing goes"): one function `def _vN_<what>(conn) -> None`
that changes the tables through `conn` (use the helpers below, which leave a table or column that is already
there alone: a database from before versions were recorded may have been made by any earlier release), and
one entry at the end of `STEPS`. Change `schema.py` to the new shape in the same commit. A new fixed table is
a step too (`create_table(conn, schema.<table>)`): a database already at the latest version gets it only
through one.

Not here: `migrate.py` moves a home of the release that kept rows in files (per home, not per database:
one PostgreSQL database may receive several such homes), and row tables gain and lose columns with their
media tables (`tables.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import sqlalchemy as sa

from pxt_assets.rowstore import column_ids, schema
from pxt_assets.rowstore.rows import files_named

#: the key of `pxt_kv` that holds the database's schema version
VERSION_KEY = "schema_version"


# -- helpers for steps: each leaves alone what is already there --------------------------------------------

def has_column(conn: sa.Connection, table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(conn).get_columns(table)}


def add_column(conn: sa.Connection, table: str, column: sa.Column) -> None:
    """`ALTER TABLE table ADD COLUMN column`, unless the table has that column."""
    if not has_column(conn, table, column.name):
        spec = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {conn.dialect.identifier_preparer.quote(table)} ADD COLUMN {spec}")


def create_table(conn: sa.Connection, table: sa.Table) -> None:
    """Create a fixed table (and its indexes) unless it exists."""
    table.create(conn, checkfirst=True)


# -- the steps ---------------------------------------------------------------------------------------------

def _v1_active_runs_holder(conn: sa.Connection) -> None:
    """Runs' marks name their process (`pxt_active_runs.holder`): a mark whose process is gone protects
    nothing. Databases made before lack the column."""
    add_column(conn, schema.active_runs.name, sa.Column("holder", sa.String(500)))


def _v2_batch_states(conn: sa.Connection) -> None:
    """The batch state machine (batches.py): a batch records the run that took it and why it is not
    committed. Batches an earlier release left 'pending' keep that status, which reads as failed."""
    add_column(conn, schema.batches.name, sa.Column("run_id", sa.String(100)))
    add_column(conn, schema.batches.name, sa.Column("reason", sa.Text))


def _v3_column_ids(conn: sa.Connection) -> None:
    """Row tables' fields named by column id (`col_<id>`) instead of the user's column names."""
    column_ids.move_all(conn)


def _v4_table_versions(conn: sa.Connection) -> None:
    """The catalog's documents gain a version and an identity (`pxt_tables.version`, `.table_id`): every
    table of a database made before is at version 1, with an identity of its own."""
    add_column(conn, schema.tables.name,
               sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")))
    add_column(conn, schema.tables.name, sa.Column("table_id", sa.String(64)))
    for (path,) in conn.execute(sa.select(schema.tables.c.path).where(schema.tables.c.table_id.is_(None))).all():
        conn.execute(schema.tables.update().where(schema.tables.c.path == path)
                     .values(table_id=schema.new_table_id()))


def _v5_udf_code(conn: sa.Connection) -> None:
    """Pickled UDFs kept beside the catalog, by hash (`pxt_udf_code`)."""
    create_table(conn, schema.udf_code)


def _journal_backfill(conn: sa.Connection) -> None:
    """Enter into the journal the files we wrote that rows and staged records name (schema step 6)."""
    now = time.time()
    for row in conn.execute(sa.select(schema.row_tables)).all():
        if row.next_column_id is None:
            continue
        rt = schema.RowTable(row.slug, row.path, row.sql_name,
                             tuple((n, t, int(i)) for n, t, i in json.loads(row.columns)), row.next_column_id)
        t = rt.table()
        for c in rt.file_columns():
            fields = [t.c._batch, t.c[rt.field(c, schema.VALUE)], t.c[rt.field(c, schema.DESTINATION)],
                      t.c[rt.field(c, schema.OWNED)]]
            for batch, value, dest, owned in conn.execute(sa.select(*fields)):
                if owned and dest:
                    for uri in files_named(value, dest):
                        _insert_new(conn, schema.written, {"uri": uri, "slug": rt.slug, "batch": batch, "column": c,
                                                          "destination": dest, "written_at": now})
    for slug, batch, column, text in conn.execute(sa.select(schema.staged.c.slug, schema.staged.c.batch,
                                                            schema.staged.c.column, schema.staged.c.records)):
        for r in json.loads(text):
            if r.get("owned") and r.get("destination"):
                for uri in files_named(r.get("value"), r["destination"]):
                    _insert_new(conn, schema.written, {"uri": uri, "slug": slug, "batch": batch, "column": column,
                                                      "destination": r["destination"], "written_at": now})


def _insert_new(conn: sa.Connection, table: sa.Table, values: dict) -> None:
    exists = conn.execute(sa.select(table.c.uri).where(table.c.uri == values["uri"])).first()
    if exists is None:
        conn.execute(table.insert().values(**values))


def _v6_write_journal(conn: sa.Connection) -> None:
    """The write-intent journal and gc's claims; the files rows and staged records name enter the journal
    (file names do not change)."""
    create_table(conn, schema.written)
    create_table(conn, schema.gc_claims)
    _journal_backfill(conn)


#: step N (1-based) brings a database from version N-1 to N; append only, never reorder or remove
STEPS: list[Callable[[sa.Connection], None]] = [
    _v1_active_runs_holder,
    _v2_batch_states,
    _v3_column_ids,
    _v4_table_versions,
    _v5_udf_code,
    _v6_write_journal,
]

#: the schema version this release writes
CURRENT = len(STEPS)


# -- running them ------------------------------------------------------------------------------------------

def recorded(conn: sa.Connection) -> int | None:
    """The version the database records, or None (no version recorded: new, or from before versions)."""
    if not sa.inspect(conn).has_table(schema.kv.name):
        return None
    value = conn.execute(sa.select(schema.kv.c.value).where(schema.kv.c.key == VERSION_KEY)).scalar()
    return None if value is None else int(value)


def is_current(conn: sa.Connection, database: str) -> bool:
    """Whether the database needs nothing done (read without a lock: a "no" is checked again under it).
    `database` names it in the error a database of a later release gets."""
    version = recorded(conn)
    _refuse_newer(version, database)
    return version == CURRENT and not _missing_tables(conn)


def upgrade(conn: sa.Connection, database: str) -> list[int]:
    """Bring the database to CURRENT, in the caller's transaction, which holds the schema lock. Returns the
    steps it ran (none when another process did them first)."""
    missing = _missing_tables(conn)
    version = recorded(conn)
    _refuse_newer(version, database)
    schema.metadata.create_all(conn, checkfirst=True)  # what it lacks (a new database: everything)
    if version is None:
        version = 0 if len(missing) < len(schema.metadata.tables) else CURRENT
        if version == CURRENT:
            _record(conn, CURRENT)
    ran = []
    for number in range(version + 1, CURRENT + 1):
        STEPS[number - 1](conn)
        _record(conn, number)  # in the step's transaction: the step and its number commit together
        ran.append(number)
    return ran


def _record(conn: sa.Connection, version: int) -> None:
    conn.execute(schema.kv.delete().where(schema.kv.c.key == VERSION_KEY))
    conn.execute(schema.kv.insert().values(key=VERSION_KEY, value=str(version)))


def _missing_tables(conn: sa.Connection) -> list[str]:
    have = set(sa.inspect(conn).get_table_names())
    return [name for name in schema.metadata.tables if name not in have]


def _refuse_newer(version: int | None, database: str) -> None:
    if version is not None and version > CURRENT:
        raise RuntimeError(f"the database {database} has schema version {version}, written by a later release of "
                           f"pxt_assets; this one knows versions up to {CURRENT}: upgrade pxt_assets")
