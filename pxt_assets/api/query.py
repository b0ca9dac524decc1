"""Queries: `t.where(...).select(...).order_by(...).limit(n).collect()`, run as SQL by the row store.

Filters, orderings and limits on stored values (`t.width > 500`, `t.img.fileurl`, `t.img.errortype != None`,
combined with `&`, `|`, `~`) are SQL: `count()` and a `select` of value columns never touch media bytes.
Anything that has no SQL form (a function of an image, `.localpath`, `net.presigned_url`) is evaluated in
Python on the rows SQL returned; media are fetched (through the file cache) only for the rows returned.
"""

from __future__ import annotations

import base64
import html
import io
import pathlib
import re
import threading
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pxt_assets import rowstore
from pxt_assets.assets import renewal
from pxt_assets.evaluate import Row, close_frame_cursors, deferred_calls, make_calls
from pxt_assets.io_managers import MediaIOManager
from pxt_assets.media import Bool, ColumnType, String, release_pins, to_rgb
from pxt_assets.redaction import redact
from pxt_assets.rowstore import query as sql

if TYPE_CHECKING:
    import pandas as pd
from pxt_assets.spec import (
    BoolOp,
    ColumnRef,
    ColumnTypeError,
    Compare,
    Expr,
    Literal,
    Prop,
    SpecError,
    as_expr,
    default_column_name,
)

_SQL_PROPS = ("fileurl", "errormsg", "errortype")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ResultSet:
    """A query result, as Pixeltable's `ResultSet`: rows indexed by integers, columns by name.

    - `len(rs)`: the number of rows; `for row in rs`: each row as a dict (column name -> value);
    - `rs[i]`: row `i` as a dict; `rs['col']`: the column's values as a list; `rs[i, 'col']` or `rs[i, j]`:
      one value;
    - `rs.to_pandas()`: a pandas DataFrame (Int columns as pandas' nullable Int64); `rs.schema`: column ->
      type name;
    - in Jupyter, an HTML table with images as inline thumbnails and URLs (fileurls) as links.

    `.localpath` values of remote media are `PinnedPath`s: their files stay in the file cache (no process
    evicts them) until the result is garbage collected, `release()` is called, or a `with` block on the
    result ends (`with t.select(t.video.localpath).collect() as rs:`)."""

    _PREVIEW_PX = 96

    def __init__(self, columns: dict[str, list[Any]], types: dict[str, ColumnType | None] | None = None) -> None:
        self._col_names = list(columns)
        self._columns = {name: list(values) for name, values in columns.items()}
        self._types = {name: (types or {}).get(name) for name in self._col_names}
        lengths = {len(v) for v in self._columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"ResultSet: columns of different lengths {sorted(lengths)}")
        self._len = lengths.pop() if lengths else 0

    # -- as Pixeltable's ResultSet --------------------------------------------------------------------
    @property
    def schema(self) -> dict[str, str]:
        """The result's columns, each with its type's name ('Int', 'Image', ...; 'Any' when unknown)."""
        return {name: (t.name if t is not None else "Any") for name, t in self._types.items()}

    @property
    def columns(self) -> list[str]:
        """The column names, in select order."""
        return list(self._col_names)

    def __len__(self) -> int:
        return self._len

    def _row(self, i: int) -> dict[str, Any]:
        return {name: self._columns[name][i] for name in self._col_names}

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            if index not in self._columns:
                raise SpecError(f"Invalid column name: {index} (the columns: {self._col_names})")
            return list(self._columns[index])
        if isinstance(index, int) and not isinstance(index, bool):
            if not -self._len <= index < self._len:
                raise IndexError(f"Bad index: row {index} of a result of {self._len} rows")
            return self._row(index)
        if isinstance(index, tuple) and len(index) == 2:
            row, col = index
            if not isinstance(row, int) or not isinstance(col, (str, int)):
                raise SpecError(f"Bad index, expected [<row idx>, <column name | column index>]: {index}")
            if isinstance(col, int):
                col = self._col_names[col]
            elif col not in self._columns:
                raise SpecError(f"Invalid column name: {col} (the columns: {self._col_names})")
            return self._columns[col][row]
        raise SpecError(f"Bad index: {index!r} (a row number, a column name, or [row, column])")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._row(i) for i in range(self._len))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResultSet):
            return False
        return self._col_names == other._col_names and self._columns == other._columns

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def to_pandas(self) -> pd.DataFrame:
        """The result as a pandas DataFrame, one column per selected expression."""
        import pandas as pd  # here, not at import: pandas is a fifth of loading the code location

        if not self._len:
            return pd.DataFrame({name: pd.Series([], dtype=object) for name in self._col_names})
        frame = pd.DataFrame({name: self._columns[name] for name in self._col_names}, columns=self._col_names)
        for name, t in self._types.items():
            if t is not None and t.name == "Int":
                frame[name] = frame[name].astype("Int64")  # nullable: a row in error stays an integer column
        return frame

    def _reverse(self) -> None:
        for values in self._columns.values():
            values.reverse()

    def __repr__(self) -> str:
        return repr(self.to_pandas())

    def __str__(self) -> str:
        return self.to_pandas().to_string()

    # -- pins -----------------------------------------------------------------------------------------
    def release(self) -> int:
        """Release the file cache pins of this result's `.localpath` values now; returns how many."""
        return sum(release_pins(values) for values in self._columns.values())

    def __enter__(self) -> ResultSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- Jupyter ----------------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self._col_names)
        body = "".join("<tr>" + "".join(f"<td>{self._cell(self._columns[c][i], self._types.get(c))}</td>"
                                        for c in self._col_names)
                       + "</tr>" for i in range(self._len))
        return f'<table class="pxt-result"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def _cell(self, v: Any, col_type: ColumnType | None = None) -> str:
        import PIL.Image

        if isinstance(v, str) and col_type is not None and col_type.is_media and "://" not in v:
            if col_type.name in ("Video", "Audio"):
                return _player(v, col_type.name.lower())
            if col_type.name == "Document":  # a link to the local file
                uri = pathlib.Path(v).as_uri() if pathlib.Path(v).is_absolute() else v
                return f'<a href="{html.escape(uri, quote=True)}" target="_blank">{html.escape(v)}</a>'

        if isinstance(v, PIL.Image.Image):
            img = to_rgb(v)
            img = img.resize((max(1, img.width * self._PREVIEW_PX // max(img.size)),
                              max(1, img.height * self._PREVIEW_PX // max(img.size))))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=80)
            return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'
        if isinstance(v, str) and _URL_RE.match(v):
            return f'<a href="{html.escape(v, quote=True)}" target="_blank">{html.escape(v)}</a>'
        if isinstance(v, float):
            return html.escape(f"{v:.3f}".rstrip("0").rstrip(".") if v == v and abs(v) < 1e15 else str(v))
        if isinstance(v, (dict, list)):
            import json

            text = json.dumps(v, default=str)
            return html.escape(text if len(text) <= 1000 else text[:497] + " ...... " + text[-497:])
        return html.escape("" if v is None else str(v))


#: a video or audio file up to this size plays inline in a notebook (embedded); a larger one is a link
_EMBED_BYTES = 2 << 20


def _player(path: str, kind: str) -> str:
    """A `<video>` / `<audio>` player for a local media file (a selected Video or Audio column), embedded as a
    data URI when small; else a link to the file."""
    import mimetypes

    p = pathlib.Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return html.escape(path)
    if size > _EMBED_BYTES:
        return f'<a href="{html.escape(p.as_uri(), quote=True)}" target="_blank">{html.escape(path)}</a>'
    mime = mimetypes.guess_type(p.name)[0] or f"{kind}/mp4"
    data = base64.b64encode(p.read_bytes()).decode()
    width = ' width="240"' if kind == "video" else ""
    return f'<{kind} controls{width}><source src="data:{mime};base64,{data}" type="{mime}"/></{kind}>'


_URL_RE = re.compile(r"^(https?|file|s3|gs|az|abfss?)://", re.IGNORECASE)


def _name_for(expr: Expr) -> str | None:
    """The column name Pixeltable gives a select item without a name (`Expr.default_column_name`): a column's
    name; `img_fileurl` for `t.img.fileurl`; a function's name for a call (`rotate`, `f1`); `c6_f1` for a
    Json path; None (then `col_<i>`) for anything else (arithmetic, comparisons, literals). A column computed
    when read (stored=False) is named as the column (MediaTable.__getattr__)."""
    if getattr(expr, "_pxt_name", None):
        return expr._pxt_name
    return default_column_name(expr)


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
                 order: tuple[tuple[Expr, bool], ...] = (), limit: int | None = None, offset: int | None = None) -> None:
        self.table = table
        self._items = items  # None: every column, plus an `errors` column
        self._where = where
        self._order = order
        self._limit = limit
        self._offset = offset

    # -- building -------------------------------------------------------------------------------------
    def _with(self, **changes: Any) -> Query:
        state = {"items": self._items, "where": self._where, "order": self._order, "limit": self._limit,
                 "offset": self._offset}
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

    def select(self, *exprs: Any, **named: Any) -> Query:
        """The values to return: `t.select(t.img.fileurl, w=t.width)`. With no arguments, every column.

        As Pixeltable: an item without a name is named by `default_column_name` (`c1`, `img_fileurl`, `rotate`,
        `f1`; `col_<i>` for arithmetic and comparisons; a repeated default name gets `_1`, `_2`, ...); a name
        given twice, or a given name equal to a default one, is an error; constants (`1`, `{'a': t.c1}`) are
        selected as they are."""
        if self._items is not None:
            raise SpecError("select(): Select list already specified")
        for name in named:
            if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or name.startswith("_"):
                raise SpecError(f"select(): Invalid name: {name}")
        base = [(e, None) for e in exprs] + [(e, k) for k, e in named.items()]
        if not base:
            return self._with(items=None)
        checked: list[tuple[Expr, str | None]] = []
        for raw, name in base:
            if callable(raw) and not isinstance(raw, Expr):
                raise SpecError(f"select(): Invalid expression: {raw!r}")
            e = as_expr(raw)
            self._check("select" if name is None else f"select {name!r}", e)
            checked.append((e, name))
        items: list[tuple[str, Expr]] = []
        seen: set[str] = set()
        for i, (e, given) in enumerate(checked):
            if given is not None:
                name = given
            else:
                default = _name_for(e)
                if default is None:
                    name = f"col_{i}"
                else:
                    name = default
                    j = 1
                    while name in seen:
                        name, j = f"{default}_{j}", j + 1
            if name in seen:
                positions = ", ".join(str(k) for k, (n, _) in enumerate([*items, (name, e)]) if n == name)
                raise SpecError(f"select(): Repeated column name {name!r} in select() at positions: {positions}")
            seen.add(name)
            items.append((name, e))
        return self._with(items=items)

    def where(self, predicate: Expr) -> Query:
        """Keep the rows where `predicate` holds: `t.where((t.width > 500) & (t.img.errortype == None))`.
        The predicate must be a Bool expression (as Pixeltable). Chained where()s combine with `&` (Pixeltable
        refuses a second where())."""
        if not isinstance(predicate, Expr):
            raise SpecError(f"where() expects a Pixeltable expression; got: {predicate!r}")
        self._check("where", predicate)
        if predicate.col_type is not None and predicate.col_type != Bool:
            raise ColumnTypeError(f"where() expression needs to return `Bool`, but instead returns "
                                  f"`{predicate.col_type.name}`: {predicate!r}")
        if self._where is not None:
            predicate = self._where & predicate
        return self._with(where=predicate)

    def order_by(self, *exprs: Expr, asc: bool = True) -> Query:
        """Order by these expressions (ties: insertion order). Several order_by()s: the first one leads."""
        if not exprs:
            raise SpecError("order_by: give at least one expression, e.g. t.order_by(t.width, asc=False)")
        for e in exprs:
            if not isinstance(e, Expr):
                raise SpecError(f"Invalid expression in order_by(): {e!r}")
        return self._with(order=self._order + tuple((self._check("order_by", e), asc) for e in exprs))

    def limit(self, n: int, offset: int | None = None) -> Query:
        """At most `n` rows, after skipping `offset` rows (pagination: `q.limit(10, offset=20)` is rows 21-30)."""
        for what, v in (("'limit()' parameter", n), ("'offset' parameter", offset)):
            if v is None and what.startswith("'offset"):
                continue
            if not isinstance(v, int) or isinstance(v, bool):
                raise ColumnTypeError(f"{what} must be of type `Int`; got {v!r}")
            if v < 0:
                raise SpecError(f"{what} must be >= 0")
        return self._with(limit=n, offset=offset or None)

    @property
    def schema(self) -> dict[str, ColumnType | None]:
        """The result's columns: name -> column type (None when unknown), in select order."""
        return {name: e.col_type for name, e in self._items_or_all()}

    def show(self, n: int = 20) -> ResultSet:
        """The first `n` rows (20 by default) of the query, as Pixeltable's `show()`."""
        return self.limit(n).collect()

    def _check_head_tail(self, what: str) -> None:
        if self._order:
            raise SpecError(f"{what}() cannot be used with order_by()")

    def head(self, n: int = 10) -> ResultSet:
        """The first `n` rows in insertion order. As Pixeltable, not after order_by() (use limit())."""
        self._check_head_tail("head")
        return self._with(limit=n, offset=None).collect()

    def tail(self, n: int = 10) -> ResultSet:
        """The last `n` rows in insertion order. As Pixeltable, not after order_by() (use limit())."""
        self._check_head_tail("tail")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SpecError(f"tail(): expected a number of rows >= 0, got {n!r}")
        return self._with(limit=None, offset=None)._collect(tail=n)

    def __repr__(self) -> str:
        parts = [f"{self.table.path}"]
        if self._where is not None:
            parts.append(f"where({self._where!r})")
        if self._items is not None:
            parts.append("select(" + ", ".join(f"{k}={e!r}" for k, e in self._items) + ")")
        for e, asc in self._order:
            parts.append(f"order_by({e!r}, asc={asc})")
        if self._limit is not None:
            parts.append(f"limit({self._limit}" + (f", offset={self._offset})" if self._offset else ")"))
        return redact("Query " + ".".join(parts))  # a constant may be a signed URL

    # -- running --------------------------------------------------------------------------------------
    def _store(self) -> tuple[rowstore.RowStore, rowstore.RowTable]:
        rt = self.table._row_table()  # a catalog table: as the catalog has it now
        return rowstore.for_settings(self.table.settings), rt

    def _columns_read(self, *, rows: bool = True) -> set[str] | None:
        """The stored columns the query reads (None: every one); `rows=False`: only to choose rows (count)."""
        if rows and self._items is None:
            return None
        exprs = [e for _, e in self._items or ()] if rows else []
        exprs += ([self._where] if self._where is not None else []) + [e for e, _ in self._order]
        return set().union(*(e.columns() for e in exprs))

    def _reading(self, read, columns: set[str] | None = None):
        """`read(store, rt)`; if another process dropped the table (or a column) while it ran, once more with
        the table as it is now (a catalog table dropped or created again: an error saying so). Values of
        `columns` (None: all) that wait for a view's decoding pass are filled first (MediaView._complete)."""
        complete = getattr(self.table, "_complete", None)
        if complete is not None:
            complete(columns)
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
            if self._limit is None and not self._offset and (where is None or store.compiles(rt, where)):
                return store.count(rt, where)
            try:
                return len(self._run(store, rt, [])[0])
            finally:
                close_frame_cursors()  # a filter that read frames (re-extracted from their videos)

        return self._reading(read, self._columns_read(rows=False))

    def _is_position(self, e: Expr) -> bool:
        """An ordering by a view's iterator media (a frame, a segment: `frames.order_by(frames.frame)`) orders
        by position in its source: its stored value is a reference (`video.mp4#t=2.000000`) or a file name
        with a number, compared by number (t=2 before t=10), not as text."""
        if isinstance(e, Prop) and e.prop == "fileurl":
            e = e.of
        if not isinstance(e, ColumnRef) or getattr(self.table, "iterator", None) is None:
            return False
        col = self.table.spec.columns.get(e.name)
        return col is not None and col.is_media and not col.is_computed

    def _items_or_all(self) -> list[tuple[str, Expr]]:
        if self._items is not None:
            return self._items
        # a column computed when read (stored=False) is its expression (MediaTable.__getattr__)
        return [(c, getattr(self.table, c)) for c in self.table.spec.columns]

    def _run(self, store, rt, items: list[tuple[str, Expr]], tail: int | None = None):
        """The query's rows: SQL does what it can (filter, order, limit on stored values); Python does the
        rest on the rows SQL returned. Returns (rows, direct names, raw columns, computed names, row_of):
        each row holds the direct items' values, then (value, errormsg, errortype) of each raw column."""
        spec = self.table.spec
        where, order = _sql(self._where), [(_sql(e), asc) for e, asc in self._order]
        py_where = where is not None and not store.compiles(rt, where)
        py_order = py_where or not all(store.compiles(rt, e, order=True) for e, _ in order) \
            or any(self._is_position(e) for e, _ in self._order)
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
        in_python = py_where or py_order
        rows = store.select(rt, [_sql(e) for e in fetch], where=None if py_where else where,
                            order=() if py_order else order,
                            limit=None if in_python else (tail if tail is not None else self._limit),
                            offset=None if in_python else self._offset, last=tail is not None and not in_python)
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
                natural = self._is_position(e)
                kept.sort(key=lambda pair: _sort_key(pair[1], e, natural), reverse=not asc)
            if tail is not None:
                kept = kept[len(kept) - tail:] if tail else []
            else:
                kept = kept[self._offset or 0:]
                if self._limit is not None:
                    kept = kept[: self._limit]
            rows = [r for r, _ in kept]
        return rows, direct, raw_cols, computed, row_of

    def collect(self) -> ResultSet:
        """Run the query: a `ResultSet` (as Pixeltable's: `rs[i]` a row dict, `rs['col']` a list,
        `rs.to_pandas()` a DataFrame) with one column per selected expression (media as PIL images; with no
        select, every column plus `errors`), in insertion order unless ordered."""
        return self._collect()

    def _collect(self, tail: int | None = None) -> ResultSet:
        def read(store: rowstore.RowStore, rt: rowstore.RowTable):
            items = self._items_or_all()  # the table's columns as it is now, with no select
            return items, self._run(store, rt, items, tail)

        try:
            items, (rows, direct, raw_cols, computed, row_of) = self._reading(read, self._columns_read())
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
        out = {name: list(columns[name]) if rows else [] for name, _ in items}
        types = {name: e.col_type for name, e in items}
        if self._items is None:
            errors = []
            for r in rows:
                parts = [f"{c}: {r[nd + 3 * i + 1]}" for i, c in enumerate(raw_cols) if r[nd + 3 * i + 1] is not None]
                errors.append("; ".join(parts) or None)
            out["errors"] = errors
            types["errors"] = String
        return ResultSet(out, types)


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


_DIGITS = re.compile(r"(\d+)")


def _natural(text: str) -> tuple[Any, ...]:
    """`text` with its runs of digits as numbers: 'v.mp4#t=2.000000' before 'v.mp4#t=10.000000'."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text)))


def _sort_key(row: Row, expr: Expr, natural: bool = False) -> tuple[bool, Any]:
    try:
        v = row.scalar(expr)
    except Exception:  # noqa: BLE001 - a value that cannot be computed sorts as missing
        v = None
    if natural and isinstance(v, str):
        v = _natural(v)
    return (v is None, v if v is not None else 0)  # NULLs last, as PostgreSQL orders ascending


__all__ = ["ExpiredURLWarning", "Query", "ResultSet", "as_expr"]
