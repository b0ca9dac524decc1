"""Moving a database written before columns had ids to SQL names by id, once.

Before, a row table's fields were named after the user's column (`v_<name>`, `e_<name>`, ...): `img` and
`IMG` were one name on SQLite, two long names sharing a prefix were one on PostgreSQL (which cuts names at 63
bytes), and a dropped long column's cut fields stayed behind. Now they are `col_<id>...` (schema.py), and the
row table's record keeps each column's id and the next one.

`move_all(conn)` does the move (schema step 3 of versions.py, under the schema lock), and does nothing on a
database that has had it: it gives the fixed
tables what they lack (`pxt_row_tables.next_column_id`; `pxt_staged.column` as long as a name may be), then, in
one transaction per row table, numbers its columns in their recorded order, renames each field to its id's
name, adds the fields a column's type needs that it lacks, drops the fields no recorded column owns (those a
dropped column with a cut name left behind), and records the ids. A record with `next_column_id` set is
done.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from pxt_assets.rowstore import schema

#: the prefixes that named a column's fields before columns had ids
LEGACY_PREFIX = {schema.VALUE: "v_", schema.ERROR: "e_", schema.ERRORTYPE: "k_", schema.VERSION: "f_",
                 schema.DESTINATION: "d_", schema.OWNED: "o_"}
_PG_NAME_BYTES = 63


def move_all(conn: sa.Connection) -> list[str]:
    """Move every row table still named by column names to names by id, in the caller's transaction (which
    holds the schema lock). Returns the paths of the tables moved."""
    _widen_fixed_tables(conn)
    rt_table = schema.row_tables
    todo = [r[0] for r in conn.execute(sa.select(rt_table.c.slug).where(rt_table.c.next_column_id.is_(None)))]
    return [path for path in (_move_table(conn, slug) for slug in todo) if path is not None]


def _q(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _add_column(conn: sa.Connection, table: str, column: sa.Column) -> None:
    spec = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE {_q(conn, table)} ADD COLUMN {spec}")


def _widen_fixed_tables(conn: sa.Connection) -> None:
    inspector = sa.inspect(conn)
    if "next_column_id" not in {c["name"] for c in inspector.get_columns(schema.row_tables.name)}:
        _add_column(conn, schema.row_tables.name, sa.Column("next_column_id", sa.Integer))
    if conn.dialect.name != "sqlite":  # SQLite does not enforce a VARCHAR's length
        col = next(c for c in inspector.get_columns(schema.staged.name) if c["name"] == "column")
        length = getattr(col["type"], "length", None)
        if length is not None and length < schema.MAX_NAME_LENGTH:
            conn.exec_driver_sql(f"ALTER TABLE {_q(conn, schema.staged.name)} ALTER COLUMN "
                                 f"{_q(conn, 'column')} TYPE VARCHAR({schema.MAX_NAME_LENGTH})")


def _legacy_names(name: str, cut: bool) -> list[str]:
    """The SQL names a field named `name` may have: as written, and as PostgreSQL cut it."""
    if not cut:
        return [name]
    return [name, name.encode()[:_PG_NAME_BYTES].decode(errors="ignore")]


def _move_table(conn: sa.Connection, slug: str) -> str | None:
    """One row table."""
    rt_table = schema.row_tables
    row = conn.execute(sa.select(rt_table).where(rt_table.c.slug == slug)).first()
    if row is None or row.next_column_id is not None:
        return None
    recorded = json.loads(row.columns)  # as that release wrote it: [[name, type name], ...]
    numbered = tuple((n, t, i) for i, (n, t) in enumerate(recorded, start=1))
    rt = schema.RowTable(slug, row.path, row.sql_name, numbered, len(numbered) + 1)
    inspector = sa.inspect(conn)
    if not inspector.has_table(row.sql_name):  # recorded, but its SQL table is gone: made again, empty
        rt.table().create(conn)
    else:
        existing = {c["name"] for c in inspector.get_columns(row.sql_name)}
        owned = set(schema.SYSTEM_COLUMNS)
        cut = conn.dialect.name != "sqlite"
        for name, type_name, column_id in rt.columns:
            for kind in schema.fields_of_type(type_name):
                target = schema.sql_field_name(column_id, kind)
                found = next((n for n in _legacy_names(LEGACY_PREFIX[kind] + name, cut)
                              if n in existing and n not in owned), None)
                if found is not None:
                    conn.exec_driver_sql(f"ALTER TABLE {_q(conn, row.sql_name)} RENAME COLUMN {_q(conn, found)} "
                                         f"TO {_q(conn, target)}")
                    owned.add(found)
                else:  # a field its type needs that it lacked
                    _add_column(conn, row.sql_name, schema.field_column(column_id, kind, type_name))
        for name in sorted(existing - owned):
            if name.startswith(tuple(LEGACY_PREFIX.values())):  # a dropped column's field left behind
                conn.exec_driver_sql(f"ALTER TABLE {_q(conn, row.sql_name)} DROP COLUMN {_q(conn, name)}")
    conn.execute(rt_table.update().where(rt_table.c.slug == slug).values(
        columns=json.dumps([list(c) for c in rt.columns]), next_column_id=rt.next_id))
    return row.path
