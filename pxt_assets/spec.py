"""Tables, columns and expressions as data.

An expression is a small tree (column reference, function call, property such as `.fileurl`, literal)
that serialises to plain dicts, so tables can also be declared in YAML or stored in a catalog. Nothing here
knows about Dagster or storage.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pxt_assets.exceptions import ErrorCode, MessageFirst, RequestError
from pxt_assets.functions import registry
from pxt_assets.functions.udf import UDF, UDFDefinitionError
from pxt_assets.media import Bool, ColumnType, Json, String, type_named
from pxt_assets.redaction import RedactedMessage
from pxt_assets.rowstore.schema import MAX_NAME_LENGTH

# Properties every media expression has; evaluated by the reader, not stored.
MEDIA_PROPERTIES = ("fileurl", "localpath")
ERROR_PROPERTIES = ("errormsg", "errortype")

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch: "c\n" is not a name


class SpecError(RedactedMessage, MessageFirst, RequestError, ValueError):
    """A table or column definition that cannot work; the message names the table and column. A
    `pxt.RequestError` (INVALID_ARGUMENT unless made with another `error_code=`), and a ValueError."""

    default_code = ErrorCode.INVALID_ARGUMENT


class ColumnTypeError(SpecError, TypeError):
    """An expression whose types do not fit: a UDF argument of the wrong type, a UDF without type hints."""

    default_code = ErrorCode.TYPE_MISMATCH


# Set while a table is serialised for the catalog: UDFs that cannot be imported by path (a notebook's, a
# script's __main__) are written with their code. Asset metadata and code versions leave it out.
_WITH_CODE: contextvars.ContextVar[bool] = contextvars.ContextVar("pxt_with_code", default=False)
# Set while an asset's code version is hashed: UDFs give their asset_version (nothing imported).
_ASSET_VERSION: contextvars.ContextVar[bool] = contextvars.ContextVar("pxt_asset_version", default=False)


@contextlib.contextmanager
def code_included() -> Iterator[None]:
    token = _WITH_CODE.set(True)
    try:
        yield
    finally:
        _WITH_CODE.reset(token)


def parse_table_path(path: str) -> tuple[str, ...]:
    """'blob_storage_demo/media' or 'blob_storage_demo.media' -> ('blob_storage_demo', 'media')."""
    parts = tuple(p for p in re.split(r"[/.]", path.strip()) if p)
    if not parts or not all(_NAME_RE.fullmatch(p) for p in parts):
        raise SpecError(
            f"invalid table path {path!r}: use names of letters, digits and '_' separated by '/' or '.'"
        )
    # Dagster names join the parts with '__' (the slug): 'a__b' and 'a/b', or 'a_/b' and 'a/_b', would be
    # one table there, sharing assets, jobs and storage.
    for p in parts:
        if "__" in p or p.startswith("_") or p.endswith("_"):
            raise SpecError(
                f"invalid table path {path!r}: {p!r} may not contain '__' or start or end with '_' "
                "(Dagster names join the path's parts with '__')"
            )
    return parts


_BAD_NAME = ErrorCode.INVALID_COLUMN_NAME


def check_column_name(name: str, table: str) -> None:
    """Refuse a name that cannot be a column of `table`, naming both: letters, digits and '_' only (so no
    control character), not starting with '_' (the row store's own names do), not empty, not `row_id` or
    `batch` (a row's own fields), at most MAX_NAME_LENGTH characters. Any such name fits either database: SQL
    sees only the column's id."""
    shown = f"{name[:60]!r}... ({len(name)} characters)" if isinstance(name, str) and len(name) > 100 else repr(name)
    where = f"table {table!r}: invalid column name {shown}"
    if not isinstance(name, str):
        raise SpecError(f"{where}: a column name is a string", error_code=_BAD_NAME)
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise SpecError(f"{where}: it contains a control character; use letters, digits and '_'", error_code=_BAD_NAME)
    if not _NAME_RE.fullmatch(name) or name.startswith("_"):
        raise SpecError(f"{where}: letters, digits and '_', not starting with '_'", error_code=_BAD_NAME)
    if name in ("row_id", "batch"):
        raise SpecError(f"{where}: {name!r} is a field of every row; choose another name", error_code=_BAD_NAME)
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(f"{where}: longer than the {MAX_NAME_LENGTH} characters a name may have", error_code=_BAD_NAME)


class Expr:
    """Base of the expression tree. Build with table columns: `t.image.rotate(90)`, `t.image.fileurl`."""

    col_type: ColumnType | None

    # -- building -------------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self.col_type == Json and not (name in ERROR_PROPERTIES and isinstance(self, ColumnRef)):
            return JsonPath.of_step(self, name)  # t.response.choices[0].message.content
        if name in MEDIA_PROPERTIES:
            if self.col_type is None or not self.col_type.is_media:
                raise AttributeError(f"{self!r} is not a media expression: it has no .{name} (.{name} is only valid "
                                     "for media columns)")
            return Prop(self, name)
        if name in ERROR_PROPERTIES:
            if not isinstance(self, ColumnRef):
                raise AttributeError(f".{name} is only defined on a column, not on {self!r}")
            return Prop(self, name)
        fn = registry.method_for(self.col_type, name)
        if fn is None:
            raise AttributeError(f"{self!r} of type {self.col_type!r} has no attribute or function {name!r}")
        if fn.is_property:
            return Call(fn.name, (self,), {})
        return lambda *args, **kwargs: Call(fn.name, (self, *map(as_expr, args)), {k: as_expr(v) for k, v in kwargs.items()})

    def __getitem__(self, key: Any) -> JsonPath:
        if self.col_type != Json:
            raise TypeError(f"{self!r} of type {self.col_type!r} cannot be indexed: only Json values have paths")
        if isinstance(key, slice):
            step: Any = {"slice": [key.start, key.stop, key.step]}
            if not all(v is None or isinstance(v, int) for v in step["slice"]):
                raise TypeError(f"{self!r}[{key!r}]: slice bounds must be integers")
        elif isinstance(key, (str, int)) and not isinstance(key, bool):
            step = key
        else:
            raise TypeError(f"{self!r}[{key!r}]: a JSON path step is a key (str), an index (int) or a slice")
        return JsonPath.of_step(self, step)

    # -- predicates (t.where(...)) -------------------------------------------------------------------
    def __eq__(self, other: Any) -> Compare:  # type: ignore[override]
        return Compare("==", self, as_expr(other))

    def __ne__(self, other: Any) -> Compare:  # type: ignore[override]
        return Compare("!=", self, as_expr(other))

    def __lt__(self, other: Any) -> Compare:
        return Compare("<", self, as_expr(other))

    def __le__(self, other: Any) -> Compare:
        return Compare("<=", self, as_expr(other))

    def __gt__(self, other: Any) -> Compare:
        return Compare(">", self, as_expr(other))

    def __ge__(self, other: Any) -> Compare:
        return Compare(">=", self, as_expr(other))

    __hash__ = object.__hash__  # expressions are keyed by identity; == builds a predicate

    def isin(self, values: Any) -> Compare:
        """`t.label.isin(['cat', 'dog'])`, `t.n.isin({1, 2})`, `t.n.isin(t.meta.allowed)` (a Json list, per
        row), as Pixeltable's: constants of another type than the column's are left out."""
        if self.col_type is not None and (self.col_type.is_media or self.col_type == Json):
            raise ColumnTypeError(f"isin(): only supported for scalar types, not {self.col_type!r}")
        if isinstance(values, Expr):
            if values.col_type is not None and values.col_type != Json:
                raise ColumnTypeError(f"isin(): argument must have a JSON type, but {values!r} has type "
                                      f"{values.col_type.name}")
            return Compare("in", self, values)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise SpecError(f"isin(): argument must be an Iterable (eg, list, dict, ...), not {values!r}")
        kept = [v for v in values if self.col_type is None or v is None or _fits(self.col_type, v)]
        return Compare("in", self, Literal(tuple(kept)))

    # -- arithmetic (as Pixeltable's ArithmeticExpr) -------------------------------------------------------
    def __add__(self, other: Any) -> Arith:
        return Arith.make("+", self, other)

    def __radd__(self, other: Any) -> Arith:
        return Arith.make("+", other, self)

    def __sub__(self, other: Any) -> Arith:
        return Arith.make("-", self, other)

    def __rsub__(self, other: Any) -> Arith:
        return Arith.make("-", other, self)

    def __mul__(self, other: Any) -> Arith:
        return Arith.make("*", self, other)

    def __rmul__(self, other: Any) -> Arith:
        return Arith.make("*", other, self)

    def __truediv__(self, other: Any) -> Arith:
        return Arith.make("/", self, other)

    def __rtruediv__(self, other: Any) -> Arith:
        return Arith.make("/", other, self)

    def __mod__(self, other: Any) -> Arith:
        return Arith.make("%", self, other)

    def __rmod__(self, other: Any) -> Arith:
        return Arith.make("%", other, self)

    def __floordiv__(self, other: Any) -> Arith:
        return Arith.make("//", self, other)

    def __rfloordiv__(self, other: Any) -> Arith:
        return Arith.make("//", other, self)

    def __pow__(self, other: Any) -> Arith:
        return Arith.make("**", self, other)

    def __rpow__(self, other: Any) -> Arith:
        return Arith.make("**", other, self)

    def __neg__(self) -> Arith:
        return Arith.make("*", self, -1)

    def __bool__(self) -> bool:
        return True  # an expression object is truthy (a predicate refuses: see _Predicate); not len()

    def __iter__(self) -> Iterator[Any]:
        # without it, Python iterates with __getitem__(0), (1), ...: endless on a Json expression
        raise ColumnTypeError(
            "Pixeltable expressions are not iterable. Iteration over data is expressed as a query "
            f"(e.g. t.select(...).collect()) or a view with an iterator: {self!r}")

    def __len__(self) -> int:
        raise ColumnTypeError(
            f"len() of a Pixeltable expression is undefined; row counts are t.count(): {self!r}")

    def equals(self, other: Any) -> bool:
        """Whether `other` is the same expression (as Pixeltable's `Expr.equals`; `==` builds a predicate)."""
        if type(self) is not type(other):
            return False
        try:
            return json.dumps(self.to_dict(), sort_keys=True, default=repr) == json.dumps(
                other.to_dict(), sort_keys=True, default=repr)
        except (SpecError, UDFDefinitionError, TypeError):
            return repr(self) == repr(other)

    def __and__(self, other: Any) -> BoolOp:
        return BoolOp("and", (self, _predicate_operand(other)))

    def __or__(self, other: Any) -> BoolOp:
        return BoolOp("or", (self, _predicate_operand(other)))

    def __invert__(self) -> BoolOp:
        return BoolOp("not", (self,))

    # -- inspecting -----------------------------------------------------------------------------------
    def children(self) -> tuple[Expr, ...]:
        return ()

    def columns(self) -> set[str]:
        """Names of the columns this expression reads."""
        out: set[str] = set()
        for c in self.children():
            out |= c.columns()
        return out

    def validate(self) -> None:
        """Raise ColumnTypeError if the expression's types do not fit (a UDF argument, a missing hint)."""
        for c in self.children():
            c.validate()

    def walk(self) -> Iterator[Expr]:
        """Every node, children before parents."""
        for c in self.children():
            yield from c.walk()
        yield self

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def code_version(self, *, loaded: bool = True) -> str:
        """A short hash of the expression: changes exactly when what it computes changes. `loaded` (a row's
        fingerprint, when the column is computed): each UDF it calls is imported first (`UDF.load`, with its
        checks), so an edited function counts; else (the asset's code version, when definitions are loaded)
        nothing is imported or unpickled (`UDF.asset_version`)."""
        if loaded:
            for node in self.walk():
                if isinstance(node, Call) and node.udf is not None:
                    node.udf.load()
        token = _ASSET_VERSION.set(not loaded)
        try:
            return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        finally:
            _ASSET_VERSION.reset(token)


@dataclass(frozen=True, eq=False)
class ColumnRef(Expr):
    name: str
    col_type: ColumnType | None = None

    def columns(self) -> set[str]:
        return {self.name}

    def to_dict(self) -> dict[str, Any]:
        return {"col": self.name}

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Literal(Expr):
    value: Any
    col_type: ColumnType | None = None

    def __post_init__(self) -> None:
        if self.col_type is None:
            object.__setattr__(self, "col_type", literal_type(self.value))

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"lit": value}

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """A call of a built-in function (by registered name) or of a user's `@pxt.udf` (fn == "udf")."""

    fn: str
    args: tuple[Expr, ...] = ()
    kwargs: dict[str, Expr] = field(default_factory=dict)
    udf: Any = None  # the UDF object when fn == "udf"

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        if self.udf is not None:
            return self.udf.signature.returns if self.udf.signature is not None else None

        return registry.get(self.fn).result_type([a.col_type for a in self.args])

    @property
    def deferred(self) -> bool:
        """A call that is best made for many rows at once: a batched or an async UDF, or a built-in with a
        batch form (presigned_url)."""
        if self.udf is not None:
            return self.udf.batch_size is not None or self.udf.is_async

        return registry.get(self.fn).batch is not None

    def children(self) -> tuple[Expr, ...]:
        return (*self.args, *self.kwargs.values())

    def validate(self) -> None:
        super().validate()
        if self.udf is None:
            return
        literals = {}
        names = [p.name for p in self.udf.signature.params] if self.udf.signature is not None else []
        for name, a in (*zip(names, self.args), *self.kwargs.items()):
            if isinstance(a, Literal):
                literals[name] = a.value
        try:
            self.udf.check_call(self.args, self.kwargs, [a.col_type for a in self.args],
                                {k: v.col_type for k, v in self.kwargs.items()}, literals)
        except UDFDefinitionError as e:
            raise ColumnTypeError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"fn": self.fn, "args": [a.to_dict() for a in self.args]}
        if self.udf is not None:
            try:
                d["udf"] = self.udf.to_dict(with_code=_WITH_CODE.get(), asset=_ASSET_VERSION.get())
            except UDFDefinitionError as e:
                raise ColumnTypeError(str(e)) from None
        if self.kwargs:
            d["kwargs"] = {k: v.to_dict() for k, v in self.kwargs.items()}
        return d

    def __repr__(self) -> str:
        if self.udf is not None:
            params = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
            return f"{self.udf.name}({', '.join(params)})"

        fn = registry.get(self.fn)
        if fn.applies_to is None:  # a plain function: net.presigned_url(img.fileurl, 3600)
            params = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
            return f"{fn.name}({', '.join(params)})"
        head, *rest = self.args
        if fn.is_property:
            return f"{head!r}.{fn.short_name}"
        params = [repr(a) for a in rest] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{head!r}.{fn.short_name}({', '.join(params)})"


@dataclass(frozen=True, eq=False)
class Prop(Expr):
    """A property of a stored value: `.fileurl`, `.localpath`, `.errormsg`, `.errortype`."""

    of: Expr
    prop: str

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        return String

    def children(self) -> tuple[Expr, ...]:
        return (self.of,)

    def to_dict(self) -> dict[str, Any]:
        return {"prop": self.prop, "of": self.of.to_dict()}

    def __repr__(self) -> str:
        return f"{self.of!r}.{self.prop}"


COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "in")


class _Predicate(Expr):
    """A predicate: a Bool expression that refuses to be used as a Python bool."""

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        return Bool

    def __bool__(self) -> bool:
        raise TypeError(f"{self!r} is a predicate for t.where(...), not a Python bool: Pixeltable expressions "
                        "cannot be used in conjunction with Python boolean operators (and/or/not); combine "
                        "predicates with &, | and ~, and write comparisons as t.col > value")


@dataclass(frozen=True, eq=False)
class Compare(_Predicate):
    """`t.width > 500`, `t.img.errortype != None`, `t.label.isin([...])`."""

    op: str
    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def to_dict(self) -> dict[str, Any]:
        return {"cmp": self.op, "left": self.left.to_dict(), "right": self.right.to_dict()}

    def __repr__(self) -> str:
        if self.op == "in":
            shown = list(self.right.value) if isinstance(self.right, Literal) else self.right
            return f"{self.left!r}.isin({shown!r})"
        return f"{self.left!r} {self.op} {self.right!r}"


@dataclass(frozen=True, eq=False)
class BoolOp(_Predicate):
    """`a & b`, `a | b`, `~a`."""

    op: str  # "and", "or", "not"
    args: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def to_dict(self) -> dict[str, Any]:
        return {"bool": self.op, "args": [a.to_dict() for a in self.args]}

    def __repr__(self) -> str:
        # As Python reads it back: & | ~ bind tighter than comparisons, so comparisons are parenthesised.
        parts = [f"({a!r})" if isinstance(a, Compare) else repr(a) for a in self.args]
        if self.op == "not":
            return f"~{parts[0]}" if parts[0].startswith("(") else f"~({parts[0]})"
        return "(" + f" {'&' if self.op == 'and' else '|'} ".join(parts) + ")"


ARITHMETIC = ("+", "-", "*", "/", "%", "//", "**")
_NUMERIC = ("Int", "Float")


def _predicate_operand(other: Any) -> Expr:
    """The other side of `&` / `|`, as Pixeltable checks it: an expression that returns a Bool."""
    if not isinstance(other, Expr):
        raise TypeError(f"Other needs to be an expression: {type(other)}")
    if other.col_type is not None and other.col_type != Bool:
        raise TypeError(f"Other needs to be an expression that returns a boolean: {other.col_type!r}")
    return other


def literal_type(value: Any) -> ColumnType | None:
    """The column type of a constant: bool, int, float, str; dicts and lists are Json; else unknown (None)."""
    from pxt_assets.media import Float, Int

    if isinstance(value, bool):
        return Bool
    if isinstance(value, int):
        return Int
    if isinstance(value, float):
        return Float
    if isinstance(value, str):
        return String
    if isinstance(value, (dict, list)):
        return Json
    return None


def _fits(col_type: ColumnType, value: Any) -> bool:
    """Whether a constant can be a value of `col_type` (an int for a Float column, not a bool for an Int)."""
    t = literal_type(value)
    if t is None:
        return False
    return t == col_type or (col_type.name == "Float" and t.name == "Int")


@dataclass(frozen=True, eq=False)
class Arith(Expr):
    """`t.c2 + 1`, `t.c3 * 2`, `-t.c2`, `t.c2 / t.c3`, `t.c2 % 7`, `t.c2 // 2`, `t.c2 ** 2`, also on Json
    paths (`t.meta.w * 2`): as Pixeltable's ArithmeticExpr. Operands must be numeric (Int, Float) or Json
    (checked per row); `/` is always Float; a Json operand gives Float (its value stays as Python computes
    it); `str + str` concatenates and `str * int` repeats, as Pixeltable's StringOp. A missing operand gives
    None (SQL NULL)."""

    op: str
    left: Expr
    right: Expr

    @classmethod
    def make(cls, op: str, left: Any, right: Any) -> Arith:
        for v in (left, right):
            if not isinstance(v, Expr) and v is not None and literal_type(v) not in (
                    *(type_named(n) for n in _NUMERIC), String, Bool):
                raise ColumnTypeError(f"Other must be Expr or literal: {type(v).__name__}")
        e = cls(op, as_expr(left), as_expr(right))
        e._check()
        return e

    def _check(self) -> None:
        lt, rt = self.left.col_type, self.right.col_type
        if self._string_op() is not None:
            return
        for side, t in (("left", lt), ("right", rt)):
            if t is not None and t.name not in _NUMERIC and t != Json:
                raise ColumnTypeError(f"{self!r}: {self.op} requires numeric types, but {side} operand has type "
                                      f"`{t.name}`")

    def _string_op(self) -> str | None:
        lt, rt = self.left.col_type, self.right.col_type
        if self.op == "+" and lt == String and rt == String:
            return "concat"
        if self.op == "*" and ((lt == String and rt is not None and rt.name == "Int")
                               or (rt == String and lt is not None and lt.name == "Int")):
            return "repeat"
        return None

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        from pxt_assets.media import Float, Int

        if self._string_op() is not None:
            return String
        lt, rt = self.left.col_type, self.right.col_type
        if lt == Json or rt == Json or self.op == "/":
            return Float
        if self.op == "**":
            if lt == Int and rt == Int and isinstance(self.right, Literal) and self.right.value is not None \
                    and self.right.value >= 0:
                return Int
            return Float
        if lt == Int and rt == Int:
            return Int
        if lt is None or rt is None:
            return None
        return Float

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def to_dict(self) -> dict[str, Any]:
        return {"arith": self.op, "left": self.left.to_dict(), "right": self.right.to_dict()}

    def compute(self, a: Any, b: Any) -> Any:
        """The value for operand values `a` and `b` (None if either is None)."""
        if a is None or b is None:
            return None
        string_op = self._string_op()
        if string_op is not None:
            return a + b if string_op == "concat" else a * b
        for side, e, v in (("left", self.left, a), ("right", self.right, b)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{self.op} requires numeric types, but {side} operand has type "
                                f"`{type(v).__name__}`")
        op = self.op
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "%":
            return a % b
        if op == "//":
            return a // b
        result = a ** b
        return result if self.col_type is not None and self.col_type.name == "Int" else float(result)

    def __repr__(self) -> str:
        def side(e: Expr) -> str:
            return f"({e!r})" if isinstance(e, Arith) else repr(e)

        return f"{side(self.left)} {self.op} {side(self.right)}"


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, eq=False)
class JsonPath(Expr):
    """A path into a Json value, as Pixeltable has them: `t.response.choices[0].message.content`,
    `t.boxes[0]['x']`, `t.boxes[1:3]`. A key or index the value lacks gives None."""

    of: Expr
    steps: tuple[Any, ...]  # str keys, int indexes, {"slice": [start, stop, step]}

    @classmethod
    def of_step(cls, base: Expr, step: Any) -> JsonPath:
        if isinstance(base, JsonPath):
            return cls(base.of, (*base.steps, step))
        return cls(base, (step,))

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        return Json

    def children(self) -> tuple[Expr, ...]:
        return (self.of,)

    def to_dict(self) -> dict[str, Any]:
        return {"path": list(self.steps), "of": self.of.to_dict()}

    def extract(self, value: Any, idx: int = 0) -> Any:
        """The path's value in `value`, as Pixeltable evaluates a path: a key or index the value lacks gives
        None; `'*'` or a slice opens a projection (the rest of the path applied to each element, one result per
        element, None where it does not resolve); a key on a list projects over the list's elements
        (`t.dets.label` as `t.dets['*'].label`)."""
        steps = self.steps
        while idx < len(steps):
            if value is None:
                return None
            step = steps[idx]
            if step == "*" or isinstance(step, dict):
                if not isinstance(value, (list, tuple)):
                    return None
                items = value[slice(*step["slice"])] if isinstance(step, dict) else value
                return [self.extract(v, idx + 1) for v in items]
            if isinstance(step, int):
                value = value[step] if isinstance(value, (list, tuple)) and -len(value) <= step < len(value) else None
            elif isinstance(value, (list, tuple)):
                return [self.extract(v, idx) for v in value]
            else:
                value = value.get(step) if isinstance(value, dict) else None
            idx += 1
        return value

    def __repr__(self) -> str:
        out = repr(self.of)
        for step in self.steps:
            if isinstance(step, dict):
                start, stop, stride = ("" if v is None else str(v) for v in step["slice"])
                out += f"[{start}:{stop}" + (f":{stride}]" if stride else "]")
            elif step == "*":
                out += "['*']"
            elif isinstance(step, str) and _IDENTIFIER.match(step):
                out += f".{step}"
            else:
                out += f"[{step!r}]"
        return out


@dataclass(frozen=True, eq=False)
class InlineJson(Expr):
    """A list or dict holding expressions, as Json: seed 002's
    `[{'role': 'user', 'content': [{'type': 'image_url', 'image_url': t.photo}]}]`."""

    value: Any  # nested dicts and lists whose leaves are Exprs or plain values

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        return Json

    def children(self) -> tuple[Expr, ...]:
        out: list[Expr] = []

        def visit(v: Any) -> None:
            if isinstance(v, Expr):
                out.append(v)
            elif isinstance(v, dict):
                for x in v.values():
                    visit(x)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    visit(x)

        visit(self.value)
        return tuple(out)

    def build(self, leaf: Any) -> Any:
        """The value with each expression replaced by `leaf(expr)`."""
        def visit(v: Any) -> Any:
            if isinstance(v, Expr):
                return leaf(v)
            if isinstance(v, dict):
                return {k: visit(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [visit(x) for x in v]
            return v

        return visit(self.value)

    def to_dict(self) -> dict[str, Any]:
        return {"inline": self.build(lambda e: {"$expr": e.to_dict()})}

    def __repr__(self) -> str:
        return repr(self.build(lambda e: _Raw(repr(e))))


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def as_expr(value: Any) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, (dict, list, tuple)) and InlineJson(value).children():
        return InlineJson(value)
    return Literal(value)


def expr_from_dict(d: Any, types: dict[str, ColumnType]) -> Expr:
    """Rebuild an expression from `to_dict()` output; `types` gives each referenced column's type."""
    if not isinstance(d, dict):
        raise SpecError(f"not an expression: {d!r}")
    if "col" in d:
        if d["col"] not in types:
            raise SpecError(f"expression reads unknown column {d['col']!r}")
        return ColumnRef(d["col"], types[d["col"]])
    if "lit" in d:
        value = d["lit"]
        return Literal(tuple(value) if isinstance(value, list) else value)
    if "fn" in d:

        udf = None
        if "udf" in d:
            udf = UDF.from_dict(d["udf"])  # imported (or unpickled) when first called
        else:
            registry.get(d["fn"])  # fails early on an unknown function
        args = tuple(expr_from_dict(a, types) for a in d.get("args", []))
        kwargs = {k: expr_from_dict(v, types) for k, v in d.get("kwargs", {}).items()}
        return Call(d["fn"], args, kwargs, udf)
    if "path" in d:
        return JsonPath(expr_from_dict(d["of"], types), tuple(d["path"]))
    if "inline" in d:
        def visit(v: Any) -> Any:
            if isinstance(v, dict):
                if set(v) == {"$expr"}:
                    return expr_from_dict(v["$expr"], types)
                return {k: visit(x) for k, x in v.items()}
            if isinstance(v, list):
                return [visit(x) for x in v]
            return v

        return InlineJson(visit(d["inline"]))
    if "prop" in d:
        return Prop(expr_from_dict(d["of"], types), d["prop"])
    if "cmp" in d:
        if d["cmp"] not in COMPARISONS:
            raise SpecError(f"unknown comparison {d['cmp']!r}")
        return Compare(d["cmp"], expr_from_dict(d["left"], types), expr_from_dict(d["right"], types))
    if "arith" in d:
        if d["arith"] not in ARITHMETIC:
            raise SpecError(f"unknown arithmetic operator {d['arith']!r}")
        return Arith(d["arith"], expr_from_dict(d["left"], types), expr_from_dict(d["right"], types))
    if "bool" in d:
        if d["bool"] not in ("and", "or", "not"):
            raise SpecError(f"unknown boolean operator {d['bool']!r}")
        return BoolOp(d["bool"], tuple(expr_from_dict(a, types) for a in d["args"]))
    raise SpecError(f"not an expression: {d!r}")


def default_column_name(expr: Expr) -> str | None:
    """The name Pixeltable gives a select item without one (`Expr.default_column_name`): a column's name;
    `img_fileurl` for `t.img.fileurl`; the function's name for a call (`rotate`, a UDF's name); `c6_f1`,
    `c7star_f5` for Json paths; `Literal` for a constant; None for anything else (then `col_<i>`)."""
    if isinstance(expr, ColumnRef):
        return expr.name
    if isinstance(expr, Prop):
        return repr(expr).replace(".", "_") if isinstance(expr.of, ColumnRef) else None
    if isinstance(expr, Call):
        if expr.udf is not None:
            return expr.udf.name
        try:
            return registry.get(expr.fn).short_name
        except ValueError:
            return None
    if isinstance(expr, JsonPath):
        anchor = default_column_name(expr.of) or ""
        path = ""
        for step in expr.steps:
            if step == "*":
                path += "[*]"
            elif isinstance(step, str):
                path += ("." if path else "") + step
            elif isinstance(step, int):
                path += f"[{step}]"
            else:
                start, stop, stride = ("" if v is None else str(v) for v in step["slice"])
                path += f"[{start}:{stop}" + (f":{stride}]" if stride else "]")
        raw = f"{anchor}.{path}"
        clean = "".join("_" if ch == "." else "star" if ch == "*" else ch if ch.isalnum() else "" for ch in raw)
        return clean.lstrip("_") or None
    if isinstance(expr, Literal):
        return "Literal"
    return None


FILE_LIST = "JsonFiles"


#: the built-in that signs URLs (pxt_assets/functions/net.py)
PRESIGNED_URL_FN = "net.presigned_url"


def _is_iterator(fn: str) -> bool:
    try:
        return registry.get(fn).iterator is not None
    except ValueError:
        return False


#: the destination rule of a computed column that is another media column as it is (`copy=t.img`, no
#: destination): its values are the same files, referenced, as Pixeltable does
REFERENCED = "referenced in place (the files of the column it names)"


@dataclass
class ColumnSpec:
    """One column. `expr` is None for a source (inserted) column. `destination` is the resolved destination
    URI for media columns (after precedence), `destination_arg` what the user passed."""

    name: str
    col_type: ColumnType
    expr: Expr | None = None
    destination_arg: str | None = None
    destination: str | None = None
    destination_source: str | None = None  # which rule chose it: "column", "output_media_dest", ...
    #: False: a computed column computed when it is read (Pixeltable's stored=False): no asset, no stored
    #: values; `t.col` is its expression
    stored: bool = True

    @property
    def is_computed(self) -> bool:
        return self.expr is not None

    @property
    def is_media(self) -> bool:
        return self.col_type.is_media

    @property
    def is_file_list(self) -> bool:
        """A Json column made by an iterator (`frames=frame_iterator(t.video, fps=1)`): per row, the list of
        what the iterator made, its media as the fileurls of files written under the column's destination."""
        return isinstance(self.expr, Call) and self.expr.udf is None and _is_iterator(self.expr.fn)

    @property
    def writes_files(self) -> bool:
        return self.is_media or self.is_file_list

    @property
    def is_reference(self) -> bool:
        """A computed column that names another media column's files (see REFERENCED): nothing is written."""
        return isinstance(self.expr, ColumnRef) and self.is_media and self.destination_source == REFERENCED

    def _presign_calls(self) -> list[Call]:
        if self.expr is None:
            return []
        return [e for e in self.expr.walk() if isinstance(e, Call) and e.udf is None and e.fn == PRESIGNED_URL_FN]

    @property
    def stores_presigned_urls(self) -> bool:
        """Whether the column's values are presigned URLs it signed (its expression calls net.presigned_url):
        they expire, so the column is renewed on a schedule (see pxt_assets/assets/renewal.py)."""
        return bool(self._presign_calls())

    @property
    def presigned_lifetime(self) -> float | None:
        """The lifetime in seconds of the presigned URLs the column stores: the shortest literal expiration its
        net.presigned_url calls give; None if it stores none, or if an expiration is not a literal."""
        out: float | None = None
        for call in self._presign_calls():
            arg = call.args[1] if len(call.args) > 1 else call.kwargs.get("expiration_seconds")
            if not isinstance(arg, Literal) or isinstance(arg.value, bool) or not isinstance(arg.value, (int, float)):
                return None
            out = arg.value if out is None else min(out, arg.value)
        return out

    @property
    def storage_type(self) -> str:
        """How the row store keeps it: the type's name; FILE_LIST for a file list (Json plus the destination
        and ownership of the files it names)."""
        return FILE_LIST if self.is_file_list else self.col_type.name

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.col_type.name}
        if not self.col_type.nullable:  # pxt.Required[...]; left out otherwise (older entries have none)
            d["nullable"] = False
        if not self.stored:
            d["stored"] = False
        if self.expr is not None:
            d["expr"] = self.expr.to_dict()
        for k in ("destination_arg", "destination", "destination_source"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d

    @classmethod
    def from_dict(cls, c: dict[str, Any], types: dict[str, ColumnType]) -> ColumnSpec:
        """A column as `to_dict` gave it; `types`: the table's earlier columns' types (its expression reads
        them)."""
        col_type = type_named(c["type"]).copy(nullable=c.get("nullable", True))
        expr = expr_from_dict(c["expr"], types) if "expr" in c else None
        return cls(c["name"], col_type, expr, c.get("destination_arg"), c.get("destination"), c.get("destination_source"),
                   stored=c.get("stored", True))


@dataclass
class TableSpec:
    """A table: its path and its columns in definition order."""

    path: tuple[str, ...]
    columns: dict[str, ColumnSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def display_path(self) -> str:
        return "/".join(self.path)

    @property
    def slug(self) -> str:
        """Path-safe and Dagster-name-safe: 'blob_storage_demo__media'."""
        return "__".join(self.path)

    def source_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns.values() if not c.is_computed]

    def computed_columns(self) -> list[ColumnSpec]:
        """The stored computed columns (each an asset of the table); see unstored_columns()."""
        return [c for c in self.columns.values() if c.is_computed and c.stored]

    def stored_columns(self) -> list[ColumnSpec]:
        """The columns whose values the row store holds: all but those computed when read."""
        return [c for c in self.columns.values() if c.stored]

    def unstored_columns(self) -> list[ColumnSpec]:
        """Computed columns computed when they are read (stored=False)."""
        return [c for c in self.columns.values() if not c.stored]

    def to_dict(self, *, with_code: bool = False) -> dict[str, Any]:
        """The table as plain data. `with_code`: UDFs that cannot be imported by path carry their code (the
        catalog keeps it so later processes can compute their columns)."""
        if with_code:
            with code_included():
                return self.to_dict()
        return {"path": self.display_path, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSpec:
        spec = cls(parse_table_path(d["path"]))
        types: dict[str, ColumnType] = {}
        for c in d["columns"]:
            spec.columns[c["name"]] = column = ColumnSpec.from_dict(c, types)
            types[c["name"]] = column.col_type
        return spec


def view_parts(doc: dict[str, Any]) -> tuple[TableSpec, TableSpec, Call]:
    """A view's catalog document as its spec, its base table's spec (as the view was defined) and its
    iterator call."""
    spec, info = TableSpec.from_dict(doc), doc["view"]
    base = TableSpec.from_dict(info["base"])
    return spec, base, expr_from_dict(info["iterator"], {n: c.col_type for n, c in base.columns.items()})


# -- iterators (frame_iterator, audio_splitter, document_splitter) as calls ------------------------------
def iterator_of(call: Any) -> registry.IteratorSpec:
    if not isinstance(call, Call) or call.udf is not None:
        raise SpecError(f"iterator: expected frame_iterator(...), audio_splitter(...) or document_splitter(...), "
                        f"got {call!r}")
    spec = registry.get(call.fn).iterator
    if spec is None:
        raise SpecError(f"iterator: {call.fn} is not an iterator (frame_iterator, audio_splitter, document_splitter)")
    return spec


def iterator_kwargs(call: Call) -> dict[str, Any]:
    """The iterator's constant arguments (every argument but the media it iterates over)."""
    out: dict[str, Any] = {}
    names = {"video.frame_iterator": (), "audio.audio_splitter": (), "document.document_splitter": ("separators",)}
    for name, arg in zip(names.get(call.fn, ()), call.args[1:]):
        out[name] = arg
    out.update(call.kwargs)
    values = {}
    for name, arg in out.items():
        if not isinstance(arg, Literal):
            raise SpecError(f"{call!r}: {name!r} must be a constant, not {arg!r}")
        values[name] = list(arg.value) if isinstance(arg.value, tuple) else arg.value
    return values


def check_iterator_call(call: Any, columns: dict[str, ColumnSpec], where: str) -> tuple[registry.IteratorSpec, str]:
    """The iterator and the column it reads; errors name `where` (the view or column being defined)."""
    spec = iterator_of(call)
    if not call.args or not isinstance(call.args[0], ColumnRef) or call.args[0].name not in columns:
        raise SpecError(f"{where}: {call!r} must iterate over a column of the base table")
    source = columns[call.args[0].name]
    if source.col_type != spec.input_type:
        raise SpecError(f"{where}: {call.fn} reads a {spec.input_type!r} column; {source.name!r} is "
                        f"{source.col_type!r}")
    iterator_kwargs(call)
    return spec, source.name


def _build_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], udf: Any = None) -> Call:
    call = Call(name, tuple(as_expr(a) for a in args), {k: as_expr(v) for k, v in kwargs.items()}, udf)
    if udf is not None:
        call.validate()  # as Pixeltable: a call whose arguments do not fit raises where it is written
    return call


def _install() -> None:
    registry.set_expression_types(_build_call, Expr)


_install()
