"""Queries in SQL: a filter, an ordering and selected values, described by a small tree of the nodes below
(the API translates its expressions into them), as SQL on a row table.

Stored values, their `fileurl`, `errormsg` and `errortype`, literals, comparisons and `and`, `or`, `not`
have a SQL form; anything else is `Python` (evaluated in Python by the caller) and compiling it raises
NotSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import sqlalchemy as sa

from pxt_assets.rowstore import schema
from pxt_assets.rowstore.engine import Database
from pxt_assets.rowstore.schema import RowTable


class NotSQL(Exception):
    """An expression that has no SQL form (a function call on an image, say): evaluated in Python instead."""


@dataclass(frozen=True)
class Column:
    """A column's stored value."""

    name: str


@dataclass(frozen=True)
class Field:
    """A property of a column's stored value: `fileurl` (the value itself), `errormsg`, `errortype`, or
    another (which has no SQL form)."""

    column: str
    prop: str


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Compare:
    op: str  # ==, !=, <, <=, >, >=, in (right: a Literal of the values)
    left: Node
    right: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # and, or, not
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Python:
    """An expression with no SQL form."""

    text: str


Node = Union[Column, Field, Literal, Compare, BoolOp, Python]

_FIELD_KIND = {"fileurl": schema.VALUE, "errormsg": schema.ERROR, "errortype": schema.ERRORTYPE}
_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class Queries(Database):
    def count(self, rt: RowTable | None, where: Node | None = None) -> int:
        if rt is None:
            return 0
        t = rt.table()
        q = sa.select(sa.func.count()).select_from(t)
        if where is not None:
            q = q.where(self.compile(rt, t, where))
        with self._read() as conn:
            return int(conn.execute(q).scalar() or 0)

    def select(self, rt: RowTable, items: Sequence[Node], *, where: Node | None = None,
               order: Sequence[tuple[Node, bool]] = (), limit: int | None = None, offset: int | None = None,
               last: bool = False) -> list[Sequence[Any]]:
        """Rows of `items` (nodes with a SQL form, see `compile`), filtered, ordered (insertion order last)
        and limited (after skipping `offset` rows) in SQL. `last` (no `order`): the last `limit` rows in
        insertion order."""
        t = rt.table()
        q = sa.select(*[self.compile(rt, t, e) for e in items]) if items else sa.select(t.c._row_id)
        if where is not None:
            q = q.where(self.compile(rt, t, where))
        for expr, asc in order:
            if self._is_json(rt, expr):
                raise NotSQL(expr)
            c = self.compile(rt, t, expr)
            q = q.order_by(c.asc().nulls_last() if asc else c.desc().nulls_first())  # one order on both databases
        q = q.order_by(t.c._pos.desc() if last else t.c._pos)
        if limit is not None:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self._read() as conn:
            result = conn.execute(q)
            if all(c.type.result_processor(self.engine.dialect, None) is None for c in q.selected_columns):
                # Values come back from the driver as they are stored (integers, floats, text): the DBAPI's
                # plain tuples, without a SQLAlchemy Row each (half the time of a million-row select).
                rows = result.cursor.fetchall()
            else:
                rows = result.all()
        return rows[::-1] if last else rows

    def compiles(self, rt: RowTable, expr: Node, *, order: bool = False) -> bool:
        """Whether `expr` has a SQL form (as a filter, or with `order` as an ordering)."""
        try:
            if order and self._is_json(rt, expr):
                return False
            self.compile(rt, rt.table(), expr)
        except NotSQL:
            return False
        return True

    @staticmethod
    def _is_json(rt: RowTable, expr: Node) -> bool:
        return isinstance(expr, Column) and rt.column_types.get(expr.name) in ("Json", schema.FILE_LIST)

    def compile(self, rt: RowTable, t: sa.Table, expr: Node) -> Any:
        """A node as SQL; NotSQL if it has no SQL form."""
        if isinstance(expr, Column):
            return self._field(rt, t, schema.VALUE, expr.name)
        if isinstance(expr, Field):
            kind = _FIELD_KIND.get(expr.prop)
            if kind is None:
                raise NotSQL(expr)
            return self._field(rt, t, kind, expr.column)
        if isinstance(expr, Literal):
            return sa.literal(expr.value)
        if isinstance(expr, Compare):
            left = self.compile(rt, t, expr.left)
            is_null = isinstance(expr.right, Literal) and expr.right.value is None
            if self._is_json(rt, expr.left) and not is_null:
                raise NotSQL(expr)  # PostgreSQL's json has no = or <: compared in Python
            if is_null:
                if expr.op == "==":
                    return left.is_(None)
                if expr.op == "!=":
                    return left.is_not(None)
                raise NotSQL(expr)
            if expr.op == "in":
                if not isinstance(expr.right, Literal):
                    raise NotSQL(expr)
                return left.in_(list(expr.right.value))
            return _COMPARE[expr.op](left, self.compile(rt, t, expr.right))
        if isinstance(expr, BoolOp):
            parts = [self.compile(rt, t, a) for a in expr.args]
            if expr.op == "not":
                return sa.not_(parts[0])
            return sa.and_(*parts) if expr.op == "and" else sa.or_(*parts)
        raise NotSQL(expr)

    def _field(self, rt: RowTable, t: sa.Table, kind: schema.Field, column: str) -> Any:
        if column not in rt.column_types:
            # a column defined since the row table was last widened: no row has it yet
            return sa.null()
        col = t.c[rt.field(column, kind)]
        if not self.is_sqlite and isinstance(col.type, sa.Text):
            # byte order, as SQLite and Python compare strings (not the cluster's locale)
            return col.collate("C")
        return col
