"""Tables, columns and expressions as data.

An expression is a small tree (column reference, function call, property such as `.fileurl`, literal)
that serialises to plain dicts, so tables can also be declared in YAML or stored in a catalog. Nothing here
knows about Dagster or storage.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pxt_assets.media import ColumnType, type_named

# Properties every media expression has; evaluated by the reader, not stored.
MEDIA_PROPERTIES = ("fileurl", "localpath")
ERROR_PROPERTIES = ("errormsg", "errortype")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecError(ValueError):
    """A table or column definition that cannot work; the message names the table and column."""


def parse_table_path(path: str) -> tuple[str, ...]:
    """'blob_storage_demo/media' or 'blob_storage_demo.media' -> ('blob_storage_demo', 'media')."""
    parts = tuple(p for p in re.split(r"[/.]", path.strip()) if p)
    if not parts or not all(_NAME_RE.match(p) for p in parts):
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


def check_column_name(name: str) -> None:
    if not _NAME_RE.match(name) or name.startswith("_") or name in ("row_id", "batch"):
        raise SpecError(f"invalid column name {name!r}: letters, digits and '_', not starting with '_'")


class Expr:
    """Base of the expression tree. Build with table columns: `t.image.rotate(90)`, `t.image.fileurl`."""

    col_type: ColumnType | None

    # -- building -------------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        from pxt_assets.functions import registry

        if name in MEDIA_PROPERTIES:
            if self.col_type is None or not self.col_type.is_media:
                raise AttributeError(f"{self!r} is not a media expression: it has no .{name}")
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
        """`t.label.isin(['cat', 'dog'])`."""
        return Compare("in", self, Literal(tuple(values)))

    def __and__(self, other: Any) -> BoolOp:
        return BoolOp("and", (self, as_expr(other)))

    def __or__(self, other: Any) -> BoolOp:
        return BoolOp("or", (self, as_expr(other)))

    def __invert__(self) -> BoolOp:
        return BoolOp("not", (self,))

    # -- inspecting -----------------------------------------------------------------------------------
    def columns(self) -> set[str]:
        """Names of the columns this expression reads."""
        return set()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def code_version(self) -> str:
        """A short hash of the expression: changes exactly when what it computes changes."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


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

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"lit": value}

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, eq=False)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...] = ()
    kwargs: dict[str, Expr] = field(default_factory=dict)

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        from pxt_assets.functions import registry

        return registry.get(self.fn).result_type([a.col_type for a in self.args])

    def columns(self) -> set[str]:
        out: set[str] = set()
        for a in (*self.args, *self.kwargs.values()):
            out |= a.columns()
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"fn": self.fn, "args": [a.to_dict() for a in self.args]}
        if self.kwargs:
            d["kwargs"] = {k: v.to_dict() for k, v in self.kwargs.items()}
        return d

    def __repr__(self) -> str:
        from pxt_assets.functions import registry

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
        from pxt_assets.media import String

        return String

    def columns(self) -> set[str]:
        return self.of.columns()

    def to_dict(self) -> dict[str, Any]:
        return {"prop": self.prop, "of": self.of.to_dict()}

    def __repr__(self) -> str:
        return f"{self.of!r}.{self.prop}"


COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "in")


class _Predicate(Expr):
    """A predicate: a Bool expression that refuses to be used as a Python bool."""

    @property
    def col_type(self) -> ColumnType | None:  # type: ignore[override]
        from pxt_assets.media import Bool

        return Bool

    def __bool__(self) -> bool:
        raise TypeError(f"{self!r} is a predicate for t.where(...), not a Python bool: combine predicates with "
                        "&, | and ~ (not and/or/not), and write comparisons as t.col > value")


@dataclass(frozen=True, eq=False)
class Compare(_Predicate):
    """`t.width > 500`, `t.img.errortype != None`, `t.label.isin([...])`."""

    op: str
    left: Expr
    right: Expr

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()

    def to_dict(self) -> dict[str, Any]:
        return {"cmp": self.op, "left": self.left.to_dict(), "right": self.right.to_dict()}

    def __repr__(self) -> str:
        if self.op == "in":
            return f"{self.left!r}.isin({list(self.right.value)!r})"  # type: ignore[attr-defined]
        return f"{self.left!r} {self.op} {self.right!r}"


@dataclass(frozen=True, eq=False)
class BoolOp(_Predicate):
    """`a & b`, `a | b`, `~a`."""

    op: str  # "and", "or", "not"
    args: tuple[Expr, ...]

    def columns(self) -> set[str]:
        out: set[str] = set()
        for a in self.args:
            out |= a.columns()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"bool": self.op, "args": [a.to_dict() for a in self.args]}

    def __repr__(self) -> str:
        # As Python reads it back: & | ~ bind tighter than comparisons, so comparisons are parenthesised.
        parts = [f"({a!r})" if isinstance(a, Compare) else repr(a) for a in self.args]
        if self.op == "not":
            return f"~{parts[0]}" if parts[0].startswith("(") else f"~({parts[0]})"
        return "(" + f" {'&' if self.op == 'and' else '|'} ".join(parts) + ")"


def as_expr(value: Any) -> Expr:
    return value if isinstance(value, Expr) else Literal(value)


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
        from pxt_assets.functions import registry

        registry.get(d["fn"])  # fails early on an unknown function
        args = tuple(expr_from_dict(a, types) for a in d.get("args", []))
        kwargs = {k: expr_from_dict(v, types) for k, v in d.get("kwargs", {}).items()}
        return Call(d["fn"], args, kwargs)
    if "prop" in d:
        return Prop(expr_from_dict(d["of"], types), d["prop"])
    if "cmp" in d:
        if d["cmp"] not in COMPARISONS:
            raise SpecError(f"unknown comparison {d['cmp']!r}")
        return Compare(d["cmp"], expr_from_dict(d["left"], types), expr_from_dict(d["right"], types))
    if "bool" in d:
        if d["bool"] not in ("and", "or", "not"):
            raise SpecError(f"unknown boolean operator {d['bool']!r}")
        return BoolOp(d["bool"], tuple(expr_from_dict(a, types) for a in d["args"]))
    raise SpecError(f"not an expression: {d!r}")


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

    @property
    def is_computed(self) -> bool:
        return self.expr is not None

    @property
    def is_media(self) -> bool:
        return self.col_type.is_media

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.col_type.name}
        if self.expr is not None:
            d["expr"] = self.expr.to_dict()
        for k in ("destination_arg", "destination", "destination_source"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


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
        return [c for c in self.columns.values() if c.is_computed]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.display_path, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSpec:
        spec = cls(parse_table_path(d["path"]))
        types: dict[str, ColumnType] = {}
        for c in d["columns"]:
            col_type = type_named(c["type"])
            expr = expr_from_dict(c["expr"], types) if "expr" in c else None
            spec.columns[c["name"]] = ColumnSpec(
                c["name"], col_type, expr, c.get("destination_arg"), c.get("destination"), c.get("destination_source")
            )
            types[c["name"]] = col_type
        return spec


def _build_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    return Call(name, tuple(as_expr(a) for a in args), {k: as_expr(v) for k, v in kwargs.items()})


def _install() -> None:
    from pxt_assets.functions import registry

    registry.set_expression_types(_build_call, Expr)


_install()
