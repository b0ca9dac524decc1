"""The database's tables, as SQLAlchemy Core metadata.

Fixed tables (one set per database, shared by every process that uses it):

    pxt_dirs        a directory made by create_dir
    pxt_tables      the catalog: one document per notebook table (schema, expressions, recorded destinations),
                    its version (every change adds one: changes are compare-and-set on it) and its identity
                    (new each time a table of that path is created, so a re-created table is another table)
    pxt_row_tables  every table that has rows here (declared in code or in the catalog): its SQL table, the
                    columns that SQL table holds (each with its id) and the next column id, so lifecycle and
                    gc work from the database alone
    pxt_batches     one row per ingest batch: what was inserted (the manifest), its status, counts
    pxt_staged      a column's records for a batch that is not yet committed (one JSON document each)
    pxt_kv          small named values (a schedule's watch cursor)
    pxt_watch_taken every object a table's sensor or schedule took from its watched prefix (a hash of its
                    URI), with the batch it went into and the tick that planned it

Row tables (one per media table, `pxt_t_<slug>`): `_pos` (insertion order), `_row_id`, `_batch`, `_idx`,
and per column, named by the column's id (as Pixeltable names its store columns), `col_<id>` (value; the URI
for media), `col_<id>_errormsg`, `col_<id>_errortype` (error kind), `col_<id>_version` (input fingerprint /
file version), and for columns that write files `col_<id>_destination` (recorded destination) and
`col_<id>_owned` (written by us). A column's id is given when it is added and never reused within its table
(the record keeps the next one), so a name the user gives never reaches SQL: `img` and `IMG`, or two long
names that share a prefix, are different columns on SQLite (whose names ignore case) and PostgreSQL (which
cuts them at 63 bytes) alike. `RowTable.field` is the one place that names a column's field in SQL.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

metadata = sa.MetaData()

#: the longest column name: the user's names are kept as data (in the catalog, the row table's record and
#: staged records' keys), never as SQL names, so this is the only limit on their length
MAX_NAME_LENGTH = 1000

dirs = sa.Table("pxt_dirs", metadata, sa.Column("path", sa.String(1000), primary_key=True))

tables = sa.Table(
    "pxt_tables", metadata,
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("doc", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # added with catalog versions (schema step 4, versions.py): databases made before lack them
    sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
    sa.Column("table_id", sa.String(64)),
)

row_tables = sa.Table(
    "pxt_row_tables", metadata,
    sa.Column("slug", sa.String(1000), primary_key=True),
    sa.Column("path", sa.String(1000), nullable=False),
    sa.Column("sql_name", sa.String(100), nullable=False, unique=True),
    sa.Column("columns", sa.Text, nullable=False),  # JSON [[column, type name, id], ...], in definition order
    # the id the next column added gets (ids are never reused within the table); null in a record written
    # before columns had ids, until column_ids.move_all (schema step 3) moves it to them
    sa.Column("next_column_id", sa.Integer),
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
    sa.Column("column", sa.String(MAX_NAME_LENGTH), primary_key=True),  # 200 in databases made before
    sa.Column("records", sa.Text, nullable=False),  # JSON list of records (row_id, value, error, ...)
    sa.Column("run_id", sa.String(100)),
)

# Pickled UDFs (a notebook's functions), by the SHA-256 of their pickle's base64 text: catalog documents hold
# the hash, so a table's document stays small and the code is read only when its column is computed.
udf_code = sa.Table(
    "pxt_udf_code", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# The write-intent journal (journal.py): every file we write, recorded before it is written, with the batch
# and column it is for. gc's candidates are its entries that no row names: a key this database never wrote is
# never a candidate, so homes sharing a destination never collect each other's files.
written = sa.Table(
    "pxt_written", metadata,
    sa.Column("uri", sa.String(2000), primary_key=True),
    sa.Column("slug", sa.String(1000), nullable=False),
    sa.Column("batch", sa.String(200), nullable=False),
    sa.Column("column", sa.String(MAX_NAME_LENGTH), nullable=False),
    sa.Column("destination", sa.String(2000), nullable=False),
    sa.Column("written_at", sa.Float, nullable=False),
    # when the write completed: gc skips a file modified after it (rewritten since, by a writer we do not know)
    sa.Column("done_at", sa.Float, nullable=True),
)
sa.Index("pxt_written_batch", written.c.slug, written.c.batch)

# A gc deleting a batch's files now: a run about to write that batch waits for it (journal.py's protocol).
gc_claims = sa.Table(
    "pxt_gc_claims", metadata,
    sa.Column("slug", sa.String(1000), primary_key=True),
    sa.Column("batch", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(500), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
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


class Field(enum.Enum):
    """A field a column has in its row table; its value is the key of the same field in a column's record
    (rows.py). Not a string: a field's SQL name is `RowTable.field(column, kind)`, never spelled by hand."""

    VALUE = "value"
    ERROR = "error"
    ERRORTYPE = "errortype"
    VERSION = "version"
    DESTINATION = "destination"  # columns that write files only
    OWNED = "owned"  # columns that write files only


VALUE, ERROR, ERRORTYPE, VERSION, DESTINATION, OWNED = Field
#: every column's fields, and those of a column that writes files
PLAIN_FIELDS = (VALUE, ERROR, ERRORTYPE, VERSION)
FILE_FIELDS = (*PLAIN_FIELDS, DESTINATION, OWNED)
_SQL_SUFFIX = {VALUE: "", ERROR: "_errormsg", ERRORTYPE: "_errortype", VERSION: "_version",
               DESTINATION: "_destination", OWNED: "_owned"}
MEDIA_TYPES = frozenset({"Image", "Video", "Audio", "Document"})
#: a Json column whose values name files we wrote (an iterator's column form): JSON, plus destination and owned
FILE_LIST = "JsonFiles"
WRITES_FILES = MEDIA_TYPES | {FILE_LIST}
#: a row table's own columns (every column's fields are `col_<id>...`)
SYSTEM_COLUMNS = ("_pos", "_row_id", "_batch", "_idx")


def sql_type(type_name: str) -> sa.types.TypeEngine:
    return {
        "Int": sa.BigInteger(),
        "Float": sa.Double(),
        "Bool": sa.Boolean(),
        "String": sa.Text(),
        "Json": sa.JSON(none_as_null=True),
        FILE_LIST: sa.JSON(none_as_null=True),
    }.get(type_name, sa.Text())  # media: the URI


def fields_of_type(type_name: str) -> tuple[Field, ...]:
    """The fields a column of this type has."""
    return FILE_FIELDS if type_name in WRITES_FILES else PLAIN_FIELDS


def sql_field_name(column_id: int, kind: Field) -> str:
    """The SQL name of the field `kind` of the column with id `column_id`: `col_3`, `col_3_errormsg`."""
    return f"col_{column_id}{_SQL_SUFFIX[kind]}"


def field_column(column_id: int, kind: Field, type_name: str) -> sa.Column:
    """The SQL column holding one field of a table column."""
    sql = {VALUE: sql_type(type_name), ERRORTYPE: sa.String(100), OWNED: sa.Boolean()}.get(kind, sa.Text())
    return sa.Column(sql_field_name(column_id, kind), sql)


def field_columns(column_id: int, type_name: str) -> list[sa.Column]:
    """The SQL columns that hold one table column."""
    return [field_column(column_id, kind, type_name) for kind in fields_of_type(type_name)]


def sql_name_for(slug: str) -> str:
    """`pxt_t_<slug>`, shortened with a hash where PostgreSQL's 63-character limit would cut it, or where
    lower-casing would make two slugs one name (`Dir__Img`, `dir__img`)."""
    name = f"pxt_t_{slug}".lower()
    if len(name) <= 55 and slug == slug.lower():
        return name
    return f"{name[:42]}_{hashlib.sha1(slug.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class RowTable:
    """A media table's SQL table as it is in the database: its name, its columns (name, type name, id) in
    definition order, and the id its next column gets."""

    slug: str
    path: str
    sql_name: str
    columns: tuple[tuple[str, str, int], ...]
    next_id: int

    @classmethod
    def new(cls, slug: str, path: str, columns: Sequence[tuple[str, str]]) -> RowTable:
        """A new table's row table: its columns (name, type name) numbered from 1."""
        numbered = tuple((n, t, i) for i, (n, t) in enumerate(columns, start=1))
        return cls(slug, path, sql_name_for(slug), numbered, len(numbered) + 1)

    def with_columns(self, columns: Sequence[tuple[str, str]]) -> RowTable:
        """This row table holding `columns` (name, type name) too: a new name gets the next id, a known one
        keeps its id and takes the type given."""
        types = dict(columns)
        kept = tuple((n, types.pop(n, t), i) for n, t, i in self.columns)
        added = tuple((n, t, i) for i, (n, t) in enumerate(types.items(), start=self.next_id))
        return RowTable(self.slug, self.path, self.sql_name, kept + added, self.next_id + len(added))

    def without(self, column: str) -> RowTable:
        """This row table without `column` (its id is not given again)."""
        return RowTable(self.slug, self.path, self.sql_name, tuple(c for c in self.columns if c[0] != column),
                        self.next_id)

    @functools.cached_property
    def column_types(self) -> dict[str, str]:
        return {n: t for n, t, _ in self.columns}

    @functools.cached_property
    def _ids(self) -> dict[str, int]:
        return {n: i for n, _, i in self.columns}

    def column_id(self, column: str) -> int:
        try:
            return self._ids[column]
        except KeyError:
            raise KeyError(f"table {self.path!r} has no column {column!r} in its row table "
                           f"{self.sql_name!r}") from None

    def field(self, column: str, kind: Field) -> str:
        """The SQL name of a column's field: the one place a column's SQL names are made."""
        return sql_field_name(self.column_id(column), kind)

    def fields(self, column: str) -> list[tuple[Field, str]]:
        """A column's fields (those its type has) and their SQL names."""
        return [(kind, self.field(column, kind)) for kind in fields_of_type(self.column_types[column])]

    def c(self, column: str, kind: Field) -> sa.Column:
        """A column's field as a column of `table()`."""
        return self.table().c[self.field(column, kind)]

    def writes_files(self, column: str) -> bool:
        return self.column_types.get(column) in WRITES_FILES

    def media_columns(self) -> list[str]:
        return [n for n, t, _ in self.columns if t in MEDIA_TYPES]

    def file_columns(self) -> list[str]:
        """Columns whose values name files we may have written: media, and file lists."""
        return [n for n, t, _ in self.columns if t in WRITES_FILES]

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
    for _, type_name, column_id in rt.columns:
        cols += field_columns(column_id, type_name)
    return sa.Table(rt.sql_name, sa.MetaData(), *cols)


def new_table_id() -> str:
    """A catalog table's identity: new for every table created, never reused."""
    return uuid.uuid4().hex

