"""Queries: `t.where(...).select(...).order_by(...).limit(n).collect()`, run as SQL by the row store.

Filters, orderings and limits on stored values (`t.width > 500`, `t.img.fileurl`, `t.img.errortype != None`,
combined with `&`, `|`, `~`) are SQL: `count()` and a `select` of value columns never touch media bytes.
Anything that has no SQL form (a function of an image, `.localpath`, `net.presigned_url`) is evaluated in
Python on the rows SQL returned; media are fetched (through the file cache) only for the rows returned.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from typing import Any

import pandas as pd

from pxt_assets import rowstore
from pxt_assets.assets import renewal
from pxt_assets.evaluate import Row, close_frame_cursors, deferred_calls, make_calls
from pxt_assets.io_managers import MediaIOManager
from pxt_assets.media import release_pins, to_rgb
from pxt_assets.redaction import redact
from pxt_assets.rowstore import query as sql
from pxt_assets.spec import BoolOp, ColumnRef, Compare, Expr, Literal, Prop, SpecError, as_expr

_SQL_PROPS = ("fileurl", "errormsg", "errortype")


class ResultSet(pd.DataFrame):
    """A query result: a pandas DataFrame that shows media as small inline previews in Jupyter.

    `.localpath` values of remote media are `PinnedPath`s: their files stay in the file cache (no process
    evicts them) until the frame is garbage collected, `release()` is called, or a `with` block on the frame
    ends."""

    _PREVIEW_PX = 96

    @property
    def _constructor(self):
        return ResultSet

    def release(self) -> int:
        """Release the file cache pins of this frame's `.localpath` values now; returns how many."""
        return sum(release_pins(column) for _, column in self.items() if column.dtype == object)

    def __enter__(self) -> ResultSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _repr_html_(self) -> str:  # type: ignore[override]
        import base64
        import html
        import io

        import PIL.Image

        def cell(v: Any) -> str:
            if isinstance(v, PIL.Image.Image):
                img = to_rgb(v)
                img = img.resize((max(1, img.width * self._PREVIEW_PX // max(img.size)),
                                  max(1, img.height * self._PREVIEW_PX // max(img.size))))
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=80)
                return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'
            return html.escape("" if v is None else str(v))

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                       for row in self.itertuples(index=False))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _name_for(expr: Expr) -> str:
    if getattr(expr, "_pxt_name", None):  # a column computed when read: named as the column (MediaTable.__getattr__)
        return expr._pxt_name
    return re.sub(r"[^0-9A-Za-z]+", "_", repr(expr)).strip("_") or "col"


def _sql(expr: Expr | None) -> sql.Node | None:
    """An expression as the row store describes a query (`rowstore.query`): what has a SQL form, it runs in
    SQL; the rest is marked `Python`."""
    if expr is None:
        return None
    if isinstance(expr, ColumnRef):
        return sql.Column(expr.name)
    if isinstance(expr, Prop) and isinstance(expr.of, ColumnRef):
        return sql.Field(expr.of.name, expr.prop)
    if isinstance(expr, Literal):
        return sql.Literal(expr.value)
    if isinstance(expr, Compare):
        return sql.Compare(expr.op, _sql(expr.left), _sql(expr.right))
    if isinstance(expr, BoolOp):
        return sql.BoolOp(expr.op, tuple(_sql(a) for a in expr.args))
    return sql.Python(type(expr).__name__)


def _is_direct(spec, expr: Expr) -> bool:
    """A select item that is a stored field as it is (no Python needed): a value column, or a column's
    `.fileurl`, `.errormsg`, `.errortype`."""
    if isinstance(expr, ColumnRef):
        return not spec.columns[expr.name].is_media
    return isinstance(expr, Prop) and expr.prop in _SQL_PROPS and isinstance(expr.of, ColumnRef)


class Query:
    """A query over a table. Build it with `t.select(...)`, `t.where(...)`, `.order_by(...)`, `.limit(n)`
    in any order; run it with `.collect()` (a DataFrame) or `.count()`."""

    def __init__(self, table, items: list[tuple[str, Expr]] | None = None, where: Expr | None = None,
                 order: tuple[tuple[Expr, bool], ...] = (), limit: int | None = None) -> None:
        self.table = table
        self._items = items  # None: every column, plus an `errors` column
        self._where = where
        self._order = order
        self._limit = limit

    # -- building -------------------------------------------------------------------------------------
    def _with(self, **changes: Any) -> Query:
        state = {"items": self._items, "where": self._where, "order": self._order, "limit": self._limit}
        state.update(changes)
        return Query(self.table, **state)

    def _check(self, what: str, e: Any) -> Expr:
        if not isinstance(e, Expr):
            raise SpecError(f"{what}: {e!r} is not an expression over {self.table.path!r}'s columns")
        unknown = e.columns() - set(self.table.spec.columns)
        if unknown:
            raise SpecError(f"{what}: {e!r} reads unknown column(s) {sorted(unknown)} of {self.table.path!r}")
        try:
            e.validate()
        except SpecError as err:
            raise type(err)(f"{what}: {err}") from None
        return e

    def select(self, *exprs: Expr, **named: Expr) -> Query:
        """The values to return: `t.select(t.img.fileurl, w=t.width)`. With no arguments, every column."""
        if not exprs and not named:
            return self._with(items=None)
        items: list[tuple[str, Expr]] = []
        for e in exprs:
            self._check("select", e)
            base = name = _name_for(e)
            n = 2
            while any(name == k for k, _ in items) or name in named:
                name, n = f"{base}_{n}", n + 1
            items.append((name, e))
        for name, e in named.items():
            items.append((name, self._check(f"select {name!r}", e)))
        return self._with(items=items)

    def where(self, predicate: Expr) -> Query:
        """Keep the rows where `predicate` holds: `t.where((t.width > 500) & (t.img.errortype == None))`.
        Chained where()s combine with `&`."""
        self._check("where", predicate)
        if self._where is not None:
            predicate = self._where & predicate
        return self._with(where=predicate)

    def order_by(self, *exprs: Expr, asc: bool = True) -> Query:
        """Order by these expressions (ties: insertion order). Several order_by()s: the first one leads."""
        if not exprs:
            raise SpecError("order_by: give at least one expression, e.g. t.order_by(t.width, asc=False)")
        return self._with(order=self._order + tuple((self._check("order_by", e), asc) for e in exprs))

    def limit(self, n: int) -> Query:
        """At most `n` rows."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SpecError(f"limit: expected a number of rows >= 0, got {n!r}")
        return self._with(limit=n)

    def head(self, n: int = 10) -> pd.DataFrame:
        return self.limit(n).collect()

    def __repr__(self) -> str:
        parts = [f"{self.table.path}"]
        if self._where is not None:
            parts.append(f"where({self._where!r})")
        if self._items is not None:
            parts.append("select(" + ", ".join(f"{k}={e!r}" for k, e in self._items) + ")")
        for e, asc in self._order:
            parts.append(f"order_by({e!r}, asc={asc})")
        if self._limit is not None:
            parts.append(f"limit({self._limit})")
        return redact("Query " + ".".join(parts))  # a constant may be a signed URL

    # -- running --------------------------------------------------------------------------------------
    def _store(self) -> tuple[rowstore.RowStore, rowstore.RowTable]:
        rt = self.table._row_table()  # a catalog table: as the catalog has it now
        return rowstore.for_settings(self.table.settings), rt

    def _reading(self, read):
        """`read(store, rt)`; if another process dropped the table (or a column) while it ran, once more with
        the table as it is now (a catalog table dropped or created again: an error saying so)."""
        store, rt = self._store()
        try:
            with store.reading(rt):
                return read(store, rt)
        except rowstore.TableGone:
            store, rt = self._store()
            with store.reading(rt):
                return read(store, rt)

    def count(self) -> int:
        """The number of rows the query returns (a SQL count when the filter is SQL)."""
        where = _sql(self._where)

        def read(store: rowstore.RowStore, rt: rowstore.RowTable) -> int:
            if self._limit is None and (where is None or store.compiles(rt, where)):
                return store.count(rt, where)
            try:
                return len(self._run(store, rt, [])[0])
            finally:
                close_frame_cursors()  # a filter that read frames (re-extracted from their videos)

        return self._reading(read)

    def _items_or_all(self) -> list[tuple[str, Expr]]:
        if self._items is not None:
            return self._items
        # a column computed when read (stored=False) is its expression (MediaTable.__getattr__)
        return [(c, getattr(self.table, c)) for c in self.table.spec.columns]

    def _run(self, store, rt, items: list[tuple[str, Expr]]):
        """The query's rows: SQL does what it can (filter, order, limit on stored values); Python does the
        rest on the rows SQL returned. Returns (rows, direct names, raw columns, computed names, row_of):
        each row holds the direct items' values, then (value, errormsg, errortype) of each raw column."""
        spec = self.table.spec
        where, order = _sql(self._where), [(_sql(e), asc) for e, asc in self._order]
        py_where = where is not None and not store.compiles(rt, where)
        py_order = py_where or not all(store.compiles(rt, e, order=True) for e, _ in order)
        direct = [name for name, e in items if _is_direct(spec, e)]
        computed = [name for name, e in items if not _is_direct(spec, e)]
        exprs = dict(items)
        python_exprs = [exprs[n] for n in computed]
        if py_where:
            python_exprs.append(self._where)
        if py_order:
            python_exprs += [e for e, _ in self._order]
        raw_cols = sorted({c for e in python_exprs for c in e.columns()})
        if self._items is None:  # the `errors` column needs every stored column's error
            raw_cols = [c.name for c in spec.stored_columns()]  # (expressions read stored columns only)
        fetch: list[Expr] = [exprs[n] for n in direct]
        for c in raw_cols:
            ref = ColumnRef(c, spec.columns[c].col_type)
            fetch += [ref, Prop(ref, "errormsg"), Prop(ref, "errortype")]
        rows = store.select(rt, [_sql(e) for e in fetch], where=None if py_where else where,
                            order=() if py_order else order,
                            limit=None if (py_where or py_order) else self._limit)
        nd = len(direct)
        reader = MediaIOManager().reader() if (computed or py_where or py_order) else None

        def row_of(r) -> Row:
            values, errors, errortypes = {}, {}, {}
            for i, c in enumerate(raw_cols):
                v, err, kind = r[nd + 3 * i], r[nd + 3 * i + 1], r[nd + 3 * i + 2]
                values[c] = v
                if err is not None:
                    errors[c], errortypes[c] = err, kind
            return Row(spec, reader, "", values, errors, errortypes)

        if py_where or py_order:
            kept = []
            for r in rows:
                row = row_of(r)
                if py_where and row.truth(self._where) is not True:
                    continue
                kept.append((r, row))
            for e, asc in reversed(self._order):  # stable sorts: the first order_by leads
                kept.sort(key=lambda pair: _sort_key(pair[1], e), reverse=not asc)
            if self._limit is not None:
                kept = kept[: self._limit]
            rows = [r for r, _ in kept]
        return rows, direct, raw_cols, computed, row_of

    def collect(self) -> ResultSet:
        """Run the query: a DataFrame with one column per selected expression (media as PIL images; with
        no select, every column plus `errors`), in insertion order unless ordered."""
        def read(store: rowstore.RowStore, rt: rowstore.RowTable):
            items = self._items_or_all()  # the table's columns as it is now, with no select
            return items, self._run(store, rt, items)

        try:
            items, (rows, direct, raw_cols, computed, row_of) = self._reading(read)
        except BaseException:
            close_frame_cursors()
            raise
        nd = len(direct)
        columns: dict[str, list[Any]] = {}
        exprs = dict(items)
        transposed = list(zip(*rows)) if rows and direct else []  # one pass over the rows, in C
        for i, name in enumerate(direct):
            columns[name] = transposed[i] if transposed else []
        if computed:
            try:
                _compute_items(rows, computed, exprs, row_of, columns)
            finally:
                close_frame_cursors()
        if rows:
            _warn_expired_urls(self.table, items, columns)
        frame = ResultSet({name: columns[name] for name, _ in items}) if rows else ResultSet(
            {name: pd.Series([], dtype=object) for name, _ in items})
        for name, e in items:
            if e.col_type is not None and e.col_type.name == "Int":
                frame[name] = frame[name].astype("Int64")  # nullable: a row in error stays an integer column
        if self._items is None:
            errors = []
            for r in rows:
                parts = [f"{c}: {r[nd + 3 * i + 1]}" for i, c in enumerate(raw_cols) if r[nd + 3 * i + 1] is not None]
                errors.append("; ".join(parts) or None)
            frame["errors"] = errors
        return frame


class ExpiredURLWarning(UserWarning):
    """A query returned stored presigned URLs that have expired (see `_warn_expired_urls`)."""


_warned_expired: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_expired_urls(table, items: list[tuple[str, Expr]], columns: dict[str, Any]) -> None:
    """Warn, once per column per process, when a selected column of stored presigned URLs holds URLs that
    have expired (its renewal did not run: no daemon, a failed run), naming the column and how to renew it."""
    now = time.time()
    for name, e in items:
        if not isinstance(e, ColumnRef):
            continue
        col = table.spec.columns.get(e.name)
        if col is None or not col.stores_presigned_urls:
            continue
        key = (table.path, col.name)
        if key in _warned_expired:
            continue
        expired = [got.expires_at for v in columns.get(name, ()) for got in renewal.expiries(v)
                   if got.expires_at <= now]
        if not expired:
            continue
        with _warned_lock:
            if key in _warned_expired:
                continue
            _warned_expired.add(key)
        cron = renewal.renewal_cron(col.presigned_lifetime)
        warnings.warn(
            f"{table.path}.{col.name}: {len(expired)} selected stored presigned URL(s) have expired (the first at "
            f"{renewal.iso(min(expired))}) and no longer work. They are renewed by re-materializing the column: "
            f"its asset's automation condition does it on the cron schedule {cron!r} while the Dagster daemon "
            "runs (sensor 'pxt_assets_automation_sensor'); or materialize the column's asset for its batches from "
            "the UI; or, from Python, `for b in t.batches(): t.resume(b)` (only the expiring URLs are signed "
            "again). URLs needed for a short time are better signed at query time: "
            "t.select(net.presigned_url(t.<media>.fileurl, seconds)).",
            ExpiredURLWarning, stacklevel=3)


def _compute_items(rows, computed, exprs, row_of, columns) -> None:
    built = [row_of(r) for r in rows]
    for name in computed:  # batched and async UDFs: one call per batch, concurrent calls
        for call in deferred_calls(exprs[name]):
            make_calls(built, call)
    for name in computed:
        columns[name] = [_value(row, exprs[name]) for row in built]


def _value(row: Row, expr: Expr) -> Any:
    try:
        return row.evaluate(expr)
    except Exception:  # noqa: BLE001 - an unreadable value shows as None; its error is in `.errormsg`
        return None


def _sort_key(row: Row, expr: Expr) -> tuple[bool, Any]:
    try:
        v = row.scalar(expr)
    except Exception:  # noqa: BLE001 - a value that cannot be computed sorts as missing
        v = None
    return (v is None, v if v is not None else 0)  # NULLs last, as PostgreSQL orders ascending


__all__ = ["ExpiredURLWarning", "Query", "ResultSet", "as_expr"]
