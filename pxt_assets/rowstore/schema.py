"""The database's tables, as SQLAlchemy Core metadata.

Fixed tables (one set per database, shared by every process that uses it):

    pxt_dirs        a directory made by create_dir
    pxt_tables      the catalog: one document per notebook table (schema, expressions, recorded destinations)
    pxt_row_tables  every table that has rows here (declared in code or in the catalog): its SQL table and
                    the columns that SQL table holds, so lifecycle and gc work from the database alone
    pxt_batches     one row per ingest batch: what was inserted (the manifest), its status, counts
    pxt_staged      a column's records for a batch that is not yet committed (one JSON document each)
    pxt_kv          small named values (a schedule's watch cursor)
    pxt_watch_taken every object a table's sensor or schedule took from its watched prefix (a hash of its
                    URI), with the batch it went into and the tick that planned it

Row tables (one per media table, `pxt_t_<slug>`): `_pos` (insertion order), `_row_id`, `_batch`, `_idx`,
and per column `v_<col>` (value; the URI for media), `e_<col>` (error message), `k_<col>` (error kind),
`f_<col>` (input fingerprint / file version), and for media `d_<col>` (recorded destination), `o_<col>`
(written by us). User column names never start with '_' and system names always do, so they cannot collide.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import sqlalchemy as sa

metadata = sa.MetaData()

dirs = sa.Table("pxt_dirs", metadata, sa.Column("path", sa.String(1000), primary_key=True))

tables = sa.Table(
    "pxt_tables", metadata,
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("doc", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

row_tables = sa.Table(
    "pxt_row_tables", metadata,
    sa.Column("slug", sa.String(1000), primary_key=True),
    sa.Column("path", sa.String(1000), nullable=False),
    sa.Column("sql_name", sa.String(100), nullable=False, unique=True),
    sa.Column("columns", sa.Text, nullable=False),  # JSON {column: type name}, in definition order
)

batches = sa.Table(
    "pxt_batches", metadata,
    sa.Column("slug", sa.String(1000), primary_key=True),
    sa.Column("batch", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # a state of batches.py's state machine
    sa.Column("manifest", sa.Text, nullable=False),  # JSON list of inserted rows
    sa.Column("source", sa.Text),  # JSON: where the batch came from (a watched prefix), or null
    sa.Column("num_rows", sa.Integer),
    sa.Column("num_errors", sa.Integer),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("committed_at", sa.Float),
    # added with the batch state machine (databases made before lack them): the run that took the batch, and
    # why a batch that is not committed is not
    sa.Column("run_id", sa.String(100)),
    sa.Column("reason", sa.Text),
)
sa.Index("pxt_batches_status", batches.c.status)

# One row per run writing a batch's files now (or killed while doing so): gc leaves such batches alone. A
# run's commit removes its own row only, so one run's commit never unprotects another's files. `holder` is the
# process writing (JSON [pid, start time, host and pid namespace]): a row whose process is provably gone
# (killed: kill -9, an OOM kill) protects nothing, so what it wrote and no row names is gc's at once.
active_runs = sa.Table(
    "pxt_active_runs", metadata,
    sa.Column("slug", sa.String(1000), primary_key=True),
    sa.Column("batch", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(100), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("holder", sa.String(500)),  # added after the first release: databases made before lack it
)

staged = sa.Table(
    "pxt_staged", metadata,
    sa.Column("slug", sa.String(1000), primary_key=True),
    sa.Column("batch", sa.String(200), primary_key=True),
    sa.Column("column", sa.String(200), primary_key=True),
    sa.Column("records", sa.Text, nullable=False),  # JSON list of records (row_id, value, error, ...)
    sa.Column("run_id", sa.String(100)),
)

kv = sa.Table(
    "pxt_kv", metadata,
    sa.Column("key", sa.String(1000), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# One row per object a watch took: never taken twice (the key), found again by name when a listing shows an
# object below the cursor's horizon, and the batches of a tick Dagster did not record are found by `seq`.
watch_taken = sa.Table(
    "pxt_watch_taken", metadata,
    sa.Column("slug", sa.String(1000), primary_key=True),
    sa.Column("watch", sa.String(64), primary_key=True),  # a hash of the watched prefix
    sa.Column("name", sa.String(64), primary_key=True),  # a hash of the object's URI
    sa.Column("batch", sa.String(200), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # the tick (cursor sequence number) that planned it
)
sa.Index("pxt_watch_taken_seq", watch_taken.c.slug, watch_taken.c.watch, watch_taken.c.seq)

# A batch's states (rowstore/batches.py owns the transitions; see docs/lifecycle.md).
CREATED = "created"  # recorded with its inserted values; no run has taken it yet
COMPUTING = "computing"  # a run took it (run_id); a run whose process is gone protects nothing
COMMITTED = "committed"  # its rows are visible: every column staged, moved into the rows in one transaction
FAILED = "failed"  # a run ended without completing it; `reason` says why; a run may take it again
LEGACY_PENDING = "pending"  # what releases before the state machine recorded for CREATED / COMPUTING / FAILED
#: `batches(slug, PENDING)`: every batch that is not committed, whatever its state
PENDING = "pending"
NOT_COMMITTED = (CREATED, COMPUTING, FAILED, LEGACY_PENDING)

#: prefixes of a column's fields in its row table
VALUE, ERROR, ERRORTYPE, VERSION, DESTINATION, OWNED = "v_", "e_", "k_", "f_", "d_", "o_"
MEDIA_TYPES = frozenset({"Image", "Video", "Audio", "Document"})
#: a Json column whose values name files we wrote (an iterator's column form): JSON, plus destination and owned
FILE_LIST = "JsonFiles"
WRITES_FILES = MEDIA_TYPES | {FILE_LIST}


def sql_type(type_name: str) -> sa.types.TypeEngine:
    return {
        "Int": sa.BigInteger(),
        "Float": sa.Double(),
        "Bool": sa.Boolean(),
        "String": sa.Text(),
        "Json": sa.JSON(none_as_null=True),
        FILE_LIST: sa.JSON(none_as_null=True),
    }.get(type_name, sa.Text())  # media: the URI


def field_columns(name: str, type_name: str) -> list[sa.Column]:
    """The SQL columns that hold one table column."""
    cols = [
        sa.Column(VALUE + name, sql_type(type_name)),
        sa.Column(ERROR + name, sa.Text()),
        sa.Column(ERRORTYPE + name, sa.String(100)),
        sa.Column(VERSION + name, sa.Text()),
    ]
    if type_name in WRITES_FILES:
        cols += [sa.Column(DESTINATION + name, sa.Text()), sa.Column(OWNED + name, sa.Boolean())]
    return cols


def sql_name_for(slug: str) -> str:
    """`pxt_t_<slug>`, shortened with a hash where PostgreSQL's 63-character limit would cut it, or where
    lower-casing would make two slugs one name (`Dir__Img`, `dir__img`)."""
    name = f"pxt_t_{slug}".lower()
    if len(name) <= 55 and slug == slug.lower():
        return name
    return f"{name[:42]}_{hashlib.sha1(slug.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class RowTable:
    """A media table's SQL table as it is in the database: its name and columns (name -> type name)."""

    slug: str
    path: str
    sql_name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def column_types(self) -> dict[str, str]:
        return dict(self.columns)

    def media_columns(self) -> list[str]:
        return [n for n, t in self.columns if t in MEDIA_TYPES]

    def file_columns(self) -> list[str]:
        """Columns whose values name files we may have written: media, and file lists."""
        return [n for n, t in self.columns if t in WRITES_FILES]

    def table(self) -> sa.Table:
        return _table_of(self)


@functools.lru_cache(maxsize=512)
def _table_of(rt: RowTable) -> sa.Table:
    """The SQLAlchemy Table of a row table, built once per shape (every query and commit uses it)."""
    cols = [
        sa.Column("_pos", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("_row_id", sa.String(200), nullable=False, unique=True),
        sa.Column("_batch", sa.String(200), nullable=False, index=True),
        sa.Column("_idx", sa.Integer, nullable=False),
    ]
    for name, type_name in rt.columns:
        cols += field_columns(name, type_name)
    return sa.Table(rt.sql_name, sa.MetaData(), *cols)
