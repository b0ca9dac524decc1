"""User functions: `@pxt.udf` makes a typed Python function callable in expressions.

    @pxt.udf
    def label(w: int, h: int) -> str: ...

    @pxt.udf(batch_size=16)
    def detect(images: pxt.Batch[PIL.Image.Image]) -> pxt.Batch[pxt.Json]: ...

    @pxt.udf(max_concurrency=8)
    async def caption(img: PIL.Image.Image) -> str: ...

    t.add_computed_column(boxes=detect(t.image))

A UDF is recorded by import path (`module:qualname`) plus a code version (a hash of its source and of the
functions and constants of its own module that it uses: see `code_version_of`; or the `version=` its
decorator pins), so other processes (`dagster dev`, a sensor's run, a second notebook) import it again and a
changed source marks its column stale. A UDF that cannot be imported by path (defined in a notebook, a
script's `__main__`, or inside another function) is also stored with the table, serialised with cloudpickle. Like the function modules, this
one stays below `pxt_assets.spec`: calling a UDF on expressions builds a node through the registry's hook.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import dis
import functools
import hashlib
import importlib
import importlib.machinery
import inspect
import json
import math
import os
import pathlib
import sys
import threading
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import PIL.Image

from pxt_assets.exceptions import ErrorCode, MessageFirst, RequestError
from pxt_assets.functions import registry
from pxt_assets.media import (
    Audio,
    Bool,
    ColumnType,
    Document,
    Float,
    Image,
    Int,
    Json,
    String,
    Video,
    type_named,
)
from pxt_assets.redaction import RedactedMessage

#: concurrent calls of an async UDF (per process) unless the decorator says otherwise
DEFAULT_ASYNC_CONCURRENCY = 16


class UDFDefinitionError(RedactedMessage, MessageFirst, RequestError, TypeError):
    """A UDF whose hints cannot be columns types, or a call whose arguments do not fit its parameters
    (a `pxt.RequestError`, INVALID_TYPE)."""

    default_code = ErrorCode.INVALID_TYPE


class UDFCallError(RedactedMessage, Exception):
    """A UDF raised for a row. `kind` is the stable error code recorded as the row's `errortype`."""

    kind = "udf_error"


class _BatchMarker:
    def __repr__(self) -> str:
        return "pxt.Batch"


_BATCH = _BatchMarker()


class Batch:
    """`pxt.Batch[T]`: a batched UDF's parameter or result, a list of T with one item per row."""

    def __class_getitem__(cls, item: Any) -> Any:
        return typing.Annotated[list[item], _BATCH]  # type: ignore[valid-type]


# -- types ---------------------------------------------------------------------------------------------------

_SCALARS: dict[Any, ColumnType] = {str: String, int: Int, float: Float, bool: Bool, dict: Json, list: Json}


@dataclass(frozen=True)
class Param:
    name: str
    col_type: ColumnType
    nullable: bool
    has_default: bool
    keyword_only: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.col_type.name, "nullable": self.nullable,
                "default": self.has_default, "kw": self.keyword_only}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Param:
        return cls(d["name"], type_named(d["type"]), d["nullable"], d["default"], d["kw"])


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    returns: ColumnType

    def to_dict(self) -> dict[str, Any]:
        return {"params": [p.to_dict() for p in self.params], "returns": self.returns.name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(tuple(Param.from_dict(p) for p in d["params"]), type_named(d["returns"]))


def column_type_of(hint: Any) -> tuple[ColumnType, bool, bool]:
    """(column type, nullable, batched) of a type hint; raises UDFDefinitionError naming the hint."""
    batched = False
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        if any(e is _BATCH for e in extras):
            args = typing.get_args(base)
            if len(args) != 1:
                raise UDFDefinitionError(f"{hint!r}: write pxt.Batch[T] with one item type")
            batched, hint = True, args[0]
        else:
            hint = base
    nullable = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(hint))
        if len(members) != 1:
            raise UDFDefinitionError(f"{hint!r}: a union of several types has no column type "
                                     "(use one type, Optional[T], or pxt.Json)")
        hint = members[0]
        origin = typing.get_origin(hint)
    if isinstance(hint, ColumnType):
        return hint, nullable, batched
    if origin in (dict, list) or hint in (dict, list):
        return Json, nullable, batched
    if hint in _SCALARS:
        return _SCALARS[hint], nullable, batched
    if isinstance(hint, type) and issubclass(hint, PIL.Image.Image):
        return Image, nullable, batched
    raise UDFDefinitionError(
        f"type hint {getattr(hint, '__name__', hint)!r} has no column type: use PIL.Image.Image, str, int, "
        "float, bool, dict, list, or pxt.Image / pxt.Video / pxt.Audio / pxt.Document / pxt.Json")


#: parameter names Pixeltable reserves (a UDF call's own keywords)
_RESERVED_PARAMS = ("group_by", "order_by")


def _signature(fn: Callable[..., Any], batched: bool) -> Signature:
    """The UDF's parameters and return type, from its hints; raises UDFDefinitionError, with Pixeltable's
    wording where Pixeltable has one ("Cannot infer pixeltable type for parameter 'x'", ...)."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # noqa: BLE001 - a hint naming something the function's module does not define
        raise UDFDefinitionError(f"its type hints cannot be resolved: {e}") from None
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in _RESERVED_PARAMS:
            raise UDFDefinitionError(f"{p.name!r} is a reserved parameter name")
        if p.name.startswith("_"):
            raise UDFDefinitionError(f"{p.name!r}: parameters starting with '_' are reserved")
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UDFDefinitionError(f"parameter {p.name!r}: *args and **kwargs are not supported")
        if p.name not in hints:
            raise UDFDefinitionError(f"Cannot infer pixeltable type for parameter {p.name!r}: it has no type hint "
                                     f"(e.g. {p.name}: PIL.Image.Image)")
        col_type, nullable, is_batch = _typed(hints[p.name], f"parameter {p.name!r}")
        if batched and not is_batch and p.kind != p.KEYWORD_ONLY:
            raise UDFDefinitionError(f"parameter {p.name!r}: a batched UDF takes pxt.Batch[...] parameters "
                                     "(constant parameters are keyword-only)")
        if is_batch and not batched:
            raise UDFDefinitionError(f"parameter {p.name!r} is a pxt.Batch: batched parameters in UDF, but no "
                                     "`batch_size` given (give @pxt.udf a batch_size)")
        param = Param(p.name, col_type, nullable or p.default is None, p.default is not p.empty,
                      p.kind == p.KEYWORD_ONLY)
        if p.default is not p.empty and p.default is not None and not is_batch and not _literal_fits(param, p.default):
            given = _literal_type_name(p.default)
            raise UDFDefinitionError(f"Default value for parameter {p.name!r} has type `{given}`, which is not of "
                                     f"type `{col_type.name}`: {p.default!r}")
        params.append(param)
    if "return" not in hints:
        raise UDFDefinitionError("Cannot infer pixeltable return type: it has no return type hint (e.g. -> pxt.Json)")
    returns, _, is_batch = _typed(hints["return"], "return")
    if batched != is_batch:
        raise UDFDefinitionError("batch_size is specified; Python return type must be a `Batch` (a batched UDF "
                                 "returns pxt.Batch[...])" if batched
                                 else "it returns a pxt.Batch: give @pxt.udf a batch_size")
    return Signature(tuple(params), returns)


def _literal_type_name(value: Any) -> str:
    for t, name in ((bool, "Bool"), (int, "Int"), (float, "Float"), (str, "String"), ((dict, list), "Json")):
        if isinstance(value, t):
            return name
    return type(value).__name__


def _typed(hint: Any, what: str) -> tuple[ColumnType, bool, bool]:
    try:
        return column_type_of(hint)
    except UDFDefinitionError as e:
        target = "return type" if what == "return" else f"type for {what}"
        raise UDFDefinitionError(f"Cannot infer pixeltable {target}: {e}") from None


def _accepts(param: ColumnType, arg: ColumnType) -> bool:
    """Whether a value of column type `arg` can be passed for a parameter of type `param`."""
    if param == arg:
        return True
    if param.is_media or arg.is_media:
        return False
    if param == Float and arg == Int:
        return True
    return param == Json or arg == Json  # a JSON path's value is checked when the row is computed


def _literal_fits(param: Param, value: Any) -> bool:
    if value is None:
        return param.nullable or param.has_default
    t = param.col_type
    if t.is_media:
        return False
    if t == Json:
        return _json_safe(value) is not _NOT_JSON
    if t == Float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == Int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t.python_type)


# -- values ---------------------------------------------------------------------------------------------------

_NOT_JSON = object()


def _json_safe(value: Any) -> Any:
    """`value` as plain JSON data (tuples as lists, numpy scalars and arrays as Python values), or _NOT_JSON."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOT_JSON  # JSON has no NaN or infinity
    if isinstance(value, str):
        return value if "\x00" not in value else _NOT_JSON  # nor do PostgreSQL's text and json
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                return _NOT_JSON
            v = _json_safe(v)
            if v is _NOT_JSON:
                return _NOT_JSON
            out[k] = v
        return out
    if isinstance(value, (list, tuple)):
        items = [_json_safe(v) for v in value]
        return _NOT_JSON if any(v is _NOT_JSON for v in items) else items
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return _json_safe(value.tolist())
    return _NOT_JSON


def coerce_result(value: Any, col_type: ColumnType) -> Any:
    """A UDF's result as the column stores it; raises TypeError naming what was returned instead."""
    if value is None:
        return None
    if col_type == Json:
        safe = _json_safe(value)
        if safe is _NOT_JSON:
            raise TypeError(f"returned {_short(value)}, which is not JSON data (dicts, lists, str without NUL "
                            "characters, finite numbers, bool, None)")
        return safe
    if col_type == Image:
        if isinstance(value, PIL.Image.Image):
            return value
        if isinstance(value, (str, pathlib.Path)):
            return pathlib.Path(value)
        raise TypeError(f"returned {type(value).__name__}, expected a PIL image or the path of an image file")
    if col_type.is_media:
        if isinstance(value, (str, pathlib.Path)):
            return pathlib.Path(value)
        raise TypeError(f"returned {type(value).__name__}, expected the path of a {col_type.name.lower()} file")
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        value = value.item()  # a numpy scalar
    if col_type == Bool and isinstance(value, bool):
        return value
    if col_type == Int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if col_type == Float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if col_type == String and isinstance(value, str):
        if "\x00" in value:
            raise TypeError(f"returned a string with a NUL character: {_short(value)}")
        return value
    raise TypeError(f"returned {type(value).__name__} {_short(value)}, expected {col_type!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the UDF ---------------------------------------------------------------------------------------------------


def _source_version(fn: Callable[..., Any]) -> str:
    """A hash of the function's source (its bytecode and constants when the source is not available): the
    previous release's code version, which `code_version_of` still gives a function that uses nothing else of
    its module."""
    return hashlib.sha256(_source_text(fn).encode()).hexdigest()[:12]


def _source_text(fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return _code_text(fn.__code__)


#: module constants of these types are part of the code version of a function that reads them (by repr)
_LITERALS = (int, float, complex, str, bytes, bool, type(None))
#: at most this many items in a module-level tuple, list, set, frozenset or dict that counts as a constant
_SMALL = 256


def _literal_repr(value: Any, depth: int = 0) -> str | None:
    """The same text for the same literal value in every process, or None if `value` is not a simple literal
    (an object, a module, a big or nested-too-deep container): only literals count as constants."""
    kind = type(value)
    if kind in _LITERALS:
        return repr(value)
    if depth > 3 or kind not in (tuple, list, frozenset, set, dict) or len(value) > _SMALL:
        return None
    if kind is dict:
        items = []
        for k, v in value.items():
            rk, rv = _literal_repr(k, depth + 1), _literal_repr(v, depth + 1)
            if rk is None or rv is None:
                return None
            items.append(f"{rk}: {rv}")
        return "{" + ", ".join(items) + "}"  # insertion order: iterating the dict sees it too
    parts = [_literal_repr(v, depth + 1) for v in value]
    if any(p is None for p in parts):
        return None
    if kind in (frozenset, set):
        return kind.__name__ + "({" + ", ".join(sorted(parts)) + "})"  # no hash-seed-dependent order
    return ("(" if kind is tuple else "[") + ", ".join(parts) + (",)" if kind is tuple and len(parts) == 1
                                                                   else ")" if kind is tuple else "]")


def _global_names(code: types.CodeType) -> set[str]:
    """Names `code` reads from its module's globals (LOAD_GLOBAL / LOAD_NAME, in nested functions, lambdas and
    comprehensions too). Attribute names (`img.rotate`) are not globals, so they are left out."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _same_module_function(obj: Any, module_globals: dict[str, Any]) -> Any:
    """The plain function `obj` is, if it was defined in the module whose globals are `module_globals` (seen
    through a UDF and through functools.wraps-style decorators such as lru_cache); else None."""
    if isinstance(obj, UDF):
        obj = obj._fn
    try:
        obj = inspect.unwrap(obj) if callable(obj) else obj
    except ValueError:  # a cycle of __wrapped__
        return None
    if isinstance(obj, types.FunctionType) and obj.__globals__ is module_globals:
        return obj
    return None


def _literal_assignments(fn: Callable[..., Any]) -> set[str] | None:
    """Names the module of `fn` assigns only literals at its top level (`SCALE = 10`, `LABELS = ("cat",
    "dog")`), from its source; None when the source is not available (then any value of a literal type
    counts). A name computed when the module is imported (`DEVICE = "cuda" if ... else "cpu"`) is left out:
    its value may differ between processes that run the same code."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is None or getattr(module, "__dict__", None) is not getattr(fn, "__globals__", None):
        return None
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    literal, other = set(), set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        is_literal = _is_literal(value)
        for target in targets:
            if isinstance(target, ast.Name):
                (literal if is_literal else other).add(target.id)
            else:  # A = B = ... is fine; a, b = ... is not a literal of either name
                other.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return literal - other


def _is_literal(node: ast.expr) -> bool:
    """A literal (`10`, `("a", "b")`, `{"k": [1, 2]}`), or frozenset(...) / set(...) of one."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("frozenset", "set") and not node.keywords and len(node.args) <= 1):
        return not node.args or _is_literal(node.args[0])
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def code_version_of(fn: Callable[..., Any]) -> str:
    """The code version of a UDF's function: a hash of its source and of what it uses of its own module,
    followed transitively (a helper that calls a helper): the source of each function defined in that module
    and the repr of each module-level constant (a name the module assigns a literal: int, float, str, bytes,
    bool, None, and small tuples, lists, sets, frozensets and dicts of those). Names from other modules
    (imports, their functions and constants), classes and other objects do not count: pin a version
    (`@pxt.udf(version=...)`) when what changes is there. A function that uses nothing of its module gets the
    previous release's version (a hash of its source alone), so an upgrade recomputes nothing it computed."""
    parts = code_dependencies(fn)
    if not parts:
        return _source_version(fn)
    text = _source_text(fn) + "".join(f"\n-- {name}: {parts[name]}" for name in sorted(parts))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def code_dependencies(fn: Callable[..., Any]) -> dict[str, str]:
    """What of its module `fn` uses, as its code version hashes it: global name -> "function <source>",
    "constant <repr>" or "udf version <pinned version>"."""
    module_globals = getattr(fn, "__globals__", None)
    if module_globals is None:
        return {}
    literal_names = _literal_assignments(fn)
    parts: dict[str, str] = {}
    seen: set[int] = {id(fn)}
    todo = [fn]
    while todo:
        f = todo.pop()
        for name in sorted(_global_names(f.__code__)):
            if name in parts or name not in module_globals:
                continue  # a builtin (len), or a name the module does not define (yet)
            obj = module_globals[name]
            if obj is fn or (isinstance(obj, UDF) and obj._fn is fn):
                continue  # the function itself (recursive)
            if isinstance(obj, UDF) and obj._pinned is not None:
                parts[name] = f"udf version {obj._pinned}"
                continue
            helper = _same_module_function(obj, module_globals)
            if helper is not None:
                parts[name] = "function " + _source_text(helper)
                if id(helper) not in seen:
                    seen.add(id(helper))
                    todo.append(helper)
                continue
            if name.startswith("__") or (literal_names is not None and name not in literal_names):
                # __file__ differs between machines, DEVICE = "cuda" if ... else "cpu" between processes
                continue
            text = _literal_repr(obj)
            if text is not None:
                parts[name] = "constant " + text
    return parts


def _code_text(code: types.CodeType) -> str:
    """The same text for the same code in every process (no addresses, no hash-seed-dependent order)."""
    def const(c: Any) -> str:
        if isinstance(c, types.CodeType):
            return _code_text(c)
        if isinstance(c, frozenset):
            return "frozenset(" + ",".join(sorted(const(x) for x in c)) + ")"
        if isinstance(c, tuple):
            return "(" + ",".join(const(x) for x in c) + ")"
        return repr(c)

    return f"{code.co_code.hex()}|{const(code.co_consts)}|{code.co_names}|{code.co_varnames}"


def _importable(module: str, qualname: str) -> bool:
    if module == "__main__" or "<locals>" in qualname or "<lambda>" in qualname:
        return False
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "built-in")


# -- what a catalog entry may make a process run ----------------------------------------------------------
# A UDF rebuilt from the catalog names its module (`ref`) and may carry a pickle. Nothing is imported or
# unpickled until its column is computed; then the module must be the project's own (its file outside the
# standard library and site-packages: the working directory, PYTHONPATH, an editable install), pxt_assets, or
# one `[pixeltable] udf_modules` allows; and a pickle is loaded only where `[pixeltable] allow_pickled_udfs`
# holds (by default: the embedded database, not a shared PostgreSQL one).

#: the largest pickled UDF stored with a table
MAX_PICKLE_BYTES = 1 << 20


def module_source_path(module: str) -> pathlib.Path | None:
    """The source file of `module`, found without importing it (nor its parent packages), or None."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        return pathlib.Path(origin) if origin else None
    search: Any = None
    found = None
    parts = module.split(".")
    for i in range(len(parts)):
        try:
            found = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
        except (ImportError, ValueError):
            return None
        if found is None:
            return None
        search = found.submodule_search_locations
    origin = getattr(found, "origin", None)
    return pathlib.Path(origin) if origin and origin.endswith(".py") else None


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[pathlib.Path, ...]:
    import site
    import sysconfig

    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    paths.add(site.getusersitepackages() if hasattr(site, "getusersitepackages") else "")
    return tuple(pathlib.Path(p).resolve() for p in paths if p)


def module_refusal(module: str, allowed: Sequence[str]) -> str | None:
    """Why a UDF recorded in the catalog may not import `module` in this process, or None if it may."""
    if module == "pxt_assets" or module.startswith("pxt_assets."):
        return None
    if any(module == a or module.startswith(a + ".") for a in allowed):
        return None
    path = module_source_path(module)
    if path is None:
        return f"module {module!r} is not found as a Python source file here"
    resolved = path.resolve()
    if any(resolved.is_relative_to(root) for root in _installed_roots()):
        return (f"module {module!r} is installed ({resolved.parent}), not the project's own: a catalog entry may "
                "only name the project's modules, or those [pixeltable] udf_modules (PIXELTABLE_UDF_MODULES) "
                "lists")
    return None


def static_code_version(path: pathlib.Path | None, qualname: str) -> str | None:
    """The code version of the function `qualname` of the module source file `path`, read without running
    it: a hash of the function's source and of what it uses of its module, transitively (the source of the
    module's functions it names, and the assignments of names it reads whose value is a literal). None when
    the file or the function is not found."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    lines = text.splitlines()

    def source_of(node: ast.AST) -> str:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        return "\n".join(lines[first - 1: node.end_lineno])

    functions: dict[str, ast.AST] = {}
    literals: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            functions[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            try:
                value = repr(ast.literal_eval(node.value))
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            for target in targets:
                if isinstance(target, ast.Name):
                    literals[target.id] = value
    target: ast.AST | None = None
    scope = functions
    for part in qualname.split("."):
        target = scope.get(part)
        if target is None:
            return None
        scope = {n.name: n for n in getattr(target, "body", [])
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    parts: dict[str, str] = {}
    todo, seen = [target], {id(target)}
    while todo:
        node = todo.pop()
        for name in sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}):
            if name in parts:
                continue
            helper = functions.get(name)
            if helper is not None and helper is not target and not isinstance(helper, ast.ClassDef):
                parts[name] = "function " + source_of(helper)
                if id(helper) not in seen:
                    seen.add(id(helper))
                    todo.append(helper)
            elif name in literals:
                parts[name] = "constant " + literals[name]
    body = source_of(target) + "".join(f"\n-- {name}: {parts[name]}" for name in sorted(parts))
    return "src-" + hashlib.sha256(body.encode()).hexdigest()[:12]


class CodeStore:
    """Where pickled UDFs are kept, by the SHA-256 of their pickle (base64 text): the catalog's documents
    hold the hash, and the bytes are read only when the column is computed. Set by the catalog layer
    (`set_code_store`); without one, a pickle stays inline in the document."""

    def put(self, sha256: str, text: str) -> None:
        raise NotImplementedError

    def get(self, sha256: str) -> str | None:
        raise NotImplementedError


_CODE_STORE: CodeStore | None = None


def set_code_store(store: CodeStore | None) -> None:
    global _CODE_STORE
    _CODE_STORE = store


def _settings() -> Any:
    from pxt_assets.config import current_settings

    return current_settings()


def _oversized_globals(fn: Callable[..., Any], limit: int) -> list[str]:
    """The globals `fn` uses whose pickle is large, largest first, as "name (N MB)"."""
    import cloudpickle

    sizes = []
    module_globals = getattr(fn, "__globals__", {})
    for name in _global_names(fn.__code__):
        if name in module_globals:
            try:
                size = len(cloudpickle.dumps(module_globals[name]))
            except Exception:  # noqa: BLE001 - not picklable on its own: not what made the pickle large
                continue
            if size > limit // 8:
                sizes.append((size, name))
    return [f"{name} ({size / 1e6:.1f} MB)" for size, name in sorted(sizes, reverse=True)]


class UDF:
    """A function usable in expressions. Called with a column or expression among its arguments it builds an
    expression (`detect(t.image)`); called with plain values only, it runs the function (for testing)."""

    def __init__(self, fn: Callable[..., Any] | None, *, batch_size: int | None = None,
                 max_concurrency: int | None = None, ref: str | None = None, version: str | None = None,
                 signature: Signature | None = None, is_async: bool | None = None, pickled: str | None = None,
                 pickle_sha256: str | None = None) -> None:
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise UDFDefinitionError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if max_concurrency is not None and (not isinstance(max_concurrency, int) or max_concurrency < 1):
            raise UDFDefinitionError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        if version is not None and (not isinstance(version, str) or not version.strip()):
            raise UDFDefinitionError(f"version must be a non-empty string, got {version!r}")
        self._fn = fn
        self.batch_size = batch_size
        self._pickled = pickled
        self._pickle_sha256 = pickle_sha256  # a pickle kept beside the catalog (CodeStore), read when computed
        self.problem: str | None = None  # reported when a column uses it, naming the column
        if fn is not None:
            functools.update_wrapper(self, fn)
            self.ref = f"{fn.__module__}:{fn.__qualname__}"
            # `version=` pins it; else it is computed when first asked (code_version_of), once the module has
            # defined the helpers and constants that follow the function
            self._pinned: str | None = version
            self._version: str | None = version
            self.is_async = inspect.iscoroutinefunction(fn)
            self.importable = _importable(fn.__module__, fn.__qualname__)
            try:
                if self.is_async and batch_size is not None:
                    raise UDFDefinitionError("an async function cannot have a batch_size (its calls already "
                                             "run concurrently)")
                self.signature: Signature | None = _signature(fn, batch_size is not None)
            except UDFDefinitionError as e:
                self.signature, self.problem = None, str(e)
        else:  # rebuilt from a stored expression: the function is imported or unpickled when first called
            # `version` is the recorded one, kept until the function is imported
            self.ref, self._version, self.signature, self._pinned = ref, version, signature, None
            self.is_async = bool(is_async)
            module, _, qualname = ref.partition(":")
            self.importable = (pickled is None and pickle_sha256 is None and module != "__main__"
                               and "<locals>" not in qualname)
            self.__name__ = self.__qualname__ = ref.rsplit(":", 1)[-1]
            self.__doc__ = None
        self.max_concurrency = max_concurrency or (DEFAULT_ASYNC_CONCURRENCY if self.is_async else 1)
        self._limit = threading.BoundedSemaphore(self.max_concurrency)
        self._async_limit: asyncio.Semaphore | None = None

    def __getstate__(self) -> dict[str, Any]:  # a UDF pickled with a notebook function that calls it
        state = dict(self.__dict__)
        state.pop("_limit", None)
        state["_async_limit"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._limit = threading.BoundedSemaphore(self.max_concurrency)

    # -- identity -----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.ref.rsplit(":", 1)[-1].rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"<pxt udf {self.ref}>"

    @property
    def version(self) -> str:
        """The code version: the pinned `version=`, else a hash of the function as it is now and of the
        helpers and constants of its module it uses (`code_version_of`; for a UDF imported by path, the
        module's current code, so an edited function or helper shows as changed), else as recorded."""
        if self._fn is None:
            return self._version  # rebuilt from the catalog and not loaded: as recorded (nothing imported)
        if self.importable:
            self._follow()  # its module reloaded: its current code is its version
        with _VERSION_LOCK:
            fn, version = self._fn, self._version
        if version is None:
            version = code_version_of(fn)
            if not _initializing(fn.__module__):  # not while its module runs: helpers may follow the function
                with _VERSION_LOCK:
                    if fn is self._fn and self._version is None:
                        self._version = version
        return version

    @property
    def asset_version(self) -> str:
        """The code version its column's asset shows (what the UI compares to mark a column stale), the same
        in every process and found without importing or unpickling anything: the pinned `version=`; for a
        UDF recorded by path, `static_code_version` of its module's source file as it is on disk (the rows
        are recomputed where `version`, the imported code's, changed); else as recorded."""
        if self._pinned is not None:
            return self._pinned
        if self.importable:
            module, _, qualname = self.ref.partition(":")
            found = static_code_version(module_source_path(module), qualname)
            if found is not None:
                return found
        return self._version if self._fn is None else self.version

    def load(self) -> None:
        """Import (or unpickle) the function now, as computing its column does: refused, naming the setting,
        when this process may not run what the catalog entry names."""
        self.fn  # noqa: B018

    @property
    def fn(self) -> Callable[..., Any]:
        if self._fn is None:
            self._adopt(self._load())
        elif self.importable:
            self._follow()
        return self._fn

    def _adopt(self, found: tuple[Callable[..., Any], str | None] | Callable[..., Any]) -> None:
        """Use this function (and the version its decorator pins) from now on; its version is computed when
        asked."""
        fn, pinned = found if isinstance(found, tuple) else (found, None)
        with _VERSION_LOCK:
            self._fn, self._pinned, self._version = fn, pinned, pinned

    def _follow(self) -> None:
        """A UDF recorded by path is what its path names: when its module was reloaded (an edited module in a
        notebook, importlib.reload), the new function (and its version) replace the old one."""
        module, _, qualname = self.ref.partition(":")
        obj: Any = sys.modules.get(module)
        if obj is None:
            return
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if obj is self or obj is None:
            return
        fn, pinned = (obj._fn, obj._pinned) if isinstance(obj, UDF) else (obj, None)
        if (not isinstance(fn, types.FunctionType) or f"{fn.__module__}:{fn.__qualname__}" != self.ref
                or inspect.iscoroutinefunction(fn) != self.is_async):
            return  # not the same definition run again (a wrapper, another object): left alone
        if fn is not self._fn or pinned != self._pinned:
            self._adopt((fn, pinned))

    def _load(self) -> tuple[Callable[..., Any], str | None] | Callable[..., Any]:
        module, _, qualname = self.ref.partition(":")
        error: Exception | None = None
        settings = _settings()
        if self.importable:
            refusal = module_refusal(module, settings.udf_modules)
            if refusal is not None:
                raise UDFCallError(f"UDF {self.ref} is not run: {refusal}")
            try:
                obj: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
                # as the module is now, not as it was recorded: its version is computed again
                return (obj.fn, obj._pinned) if isinstance(obj, UDF) else (obj, None)
            except Exception as e:  # noqa: BLE001 - reported with the path below
                error = e
        if self._pickled is not None or self._pickle_sha256 is not None:
            if not settings.pickled_udfs_allowed:
                raise UDFCallError(
                    f"UDF {self.ref} is stored pickled (defined in a notebook or a script), and unpickling runs "
                    "code: set [pixeltable] allow_pickled_udfs = true (PIXELTABLE_ALLOW_PICKLED_UDFS=true) where "
                    "everyone who can write the shared database is trusted, or define it in a module")
            import cloudpickle

            text = self._pickled if self._pickled is not None else self._stored_pickle()
            return cloudpickle.loads(base64.b64decode(text)), self._version  # as recorded
        raise UDFCallError(f"UDF {self.ref} cannot be imported in this process: {error}; make its module "
                           "importable here (installed, or on PYTHONPATH / the working directory)")

    def _stored_pickle(self) -> str:
        text = _CODE_STORE.get(self._pickle_sha256) if _CODE_STORE is not None else None
        if text is None or hashlib.sha256(text.encode()).hexdigest() != self._pickle_sha256:
            raise UDFCallError(f"UDF {self.ref}: its pickled code ({self._pickle_sha256[:12]}) is not in the "
                               "database (or does not match its hash)")
        return text

    def to_dict(self, *, with_code: bool, asset: bool = False) -> dict[str, Any]:
        """As recorded in the catalog (`with_code`: a pickle too, for a function that cannot be imported by
        path); `asset`: with the asset's code version (asset_version) instead, for its hash."""
        if self.signature is None:
            raise UDFDefinitionError(f"UDF {self.ref}: {self.problem}")
        d: dict[str, Any] = {"ref": self.ref, "version": self.asset_version if asset else self.version,
                             "signature": self.signature.to_dict()}
        if self._pinned is not None:
            d["pinned"] = True
        if self.batch_size is not None:
            d["batch_size"] = self.batch_size
        if self.is_async:
            d["async"] = True
        if self.max_concurrency != (DEFAULT_ASYNC_CONCURRENCY if self.is_async else 1):
            d["max_concurrency"] = self.max_concurrency
        if with_code and not self.importable:
            text = self._pickle()
            if _CODE_STORE is None:
                d["pickle"] = text
            else:  # kept beside, once; the document holds its hash
                sha = hashlib.sha256(text.encode()).hexdigest()
                _CODE_STORE.put(sha, text)
                d["pickle_sha256"] = sha
        return d

    def _pickle(self) -> str:
        if self._pickled is None:
            import cloudpickle

            if not _settings().pickled_udfs_allowed:
                raise UDFDefinitionError(
                    f"UDF {self.ref} cannot be imported by path (defined in a notebook or a script), so it would be "
                    "stored pickled, and this database is shared: pickles are off unless [pixeltable] "
                    "allow_pickled_udfs = true (PIXELTABLE_ALLOW_PICKLED_UDFS=true); or define it in a module")
            data = cloudpickle.dumps(self.fn)
            if len(data) > MAX_PICKLE_BYTES:
                big = _oversized_globals(self.fn, MAX_PICKLE_BYTES)
                raise UDFDefinitionError(
                    f"UDF {self.ref} pickles to {len(data) / 1e6:.1f} MB (at most {MAX_PICKLE_BYTES / 1e6:.1f} MB "
                    f"are stored with a table): {'the globals ' + ', '.join(big) + ' go' if big else 'what it uses goes'}"
                    " with it; load large data inside the function, or define it in a module")
            self._pickled = base64.b64encode(data).decode()
        return self._pickled

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UDF:
        key = json.dumps(d, sort_keys=True)
        with _LOADED_LOCK:
            udf = _LOADED.get(key)
            if udf is None:
                udf = _LOADED[key] = cls(
                    None, batch_size=d.get("batch_size"), max_concurrency=d.get("max_concurrency"), ref=d["ref"],
                    version=d["version"], signature=Signature.from_dict(d["signature"]),
                    is_async=d.get("async", False), pickled=d.get("pickle"),
                    pickle_sha256=d.get("pickle_sha256"))
                if d.get("pinned"):
                    udf._pinned = d["version"]
        return udf

    # -- building expressions ------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        qualified = self.ref.replace(":", ".")
        for where, v in [*((str(i), a) for i, a in enumerate(args, 1)), *((repr(k), a) for k, a in kwargs.items())]:
            if _not_a_value(v):  # as Pixeltable: a class, a function or a module is no expression nor constant
                raise UDFDefinitionError(f"Argument {where} in call to {qualified!r} is not a valid Pixeltable "
                                         f"expression: {v!r}")
        try:
            bound = inspect.signature(self.fn).bind(*args, **kwargs) if self._fn is not None else None
        except TypeError as e:
            raise UDFDefinitionError(f"UDF {self.name}: {e}; {self._expected(args, kwargs)}") from None
        values = [*args, *kwargs.values()]
        if not any(registry.is_expression(v) or _holds_expression(v) for v in values):
            return self.fn(*args, **kwargs)  # plain values: run it
        if registry._CALL_FACTORY is None:
            raise RuntimeError("pxt_assets.spec is not loaded: import pxt_assets first")
        if bound is None:
            return registry._CALL_FACTORY("udf", args, kwargs, udf=self)
        positional, named, in_order = [], {}, True
        for p in inspect.signature(self.fn).parameters.values():
            if p.name not in bound.arguments:
                in_order = False  # later arguments go by name
            elif in_order and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                positional.append(bound.arguments[p.name])
            else:
                named[p.name] = bound.arguments[p.name]
        return registry._CALL_FACTORY("udf", tuple(positional), named, udf=self)

    def _expected(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        """'expected (a: pxt.Int, b: pxt.String | None), got (Int, b=None)', as Pixeltable words a bad call."""
        def shown(v: Any) -> str:
            if v is None:
                return "None"
            t = getattr(v, "col_type", None) if registry.is_expression(v) else None
            return t.name if t is not None else (_literal_type_name(v) if not registry.is_expression(v) else "?")

        params = ", ".join(f"{p.name}: {p.col_type!r}" + (" | None" if p.nullable else "")
                           for p in (self.signature.params if self.signature is not None else ()))
        got = ", ".join([shown(a) for a in args] + [f"{k}={shown(v)}" for k, v in kwargs.items()])
        return f"expected ({params}), got ({got})"

    def check_call(self, args: Sequence[Any], kwargs: dict[str, Any], arg_types: list[ColumnType | None],
                   kwarg_types: dict[str, ColumnType | None], literals: dict[str, Any]) -> None:
        """Raise UDFDefinitionError if the call's arguments do not fit the parameters. `arg_types` and
        `kwarg_types` are the arguments' column types; `literals` maps parameters given as constants to
        their values."""
        where = f"UDF {self.name} ({self.ref})"
        if self.signature is None:
            raise UDFDefinitionError(f"{where}: {self.problem}")
        params = {p.name: p for p in self.signature.params}
        given = dict(zip([p.name for p in self.signature.params], arg_types))
        given.update(kwarg_types)
        for p in self.signature.params:
            if p.name not in given and not p.has_default:
                raise UDFDefinitionError(f"{where}: missing argument {p.name!r}")
        for name, arg_type in given.items():
            p = params.get(name)
            if p is None:
                raise UDFDefinitionError(f"{where}: no parameter {name!r}")
            if self.batch_size is not None and p.keyword_only and name not in literals:
                raise UDFDefinitionError(f"{where}: {name!r} of a batched UDF is one value for the whole batch: "
                                         "pass a constant, not a column")
            if name in literals:
                if not _literal_fits(p, literals[name]):
                    raise UDFDefinitionError(f"{where}: parameter {name!r} expects {p.col_type!r}, got the "
                                             f"constant {_short(literals[name])}")
                continue
            if arg_type is None:
                raise UDFDefinitionError(f"{where}: cannot tell the type of the argument for {name!r}")
            if not _accepts(p.col_type, arg_type):
                raise UDFDefinitionError(f"{where}: parameter {name!r} expects {p.col_type!r}, got {arg_type!r}")

    # -- running -------------------------------------------------------------------------------------------
    def _failed(self, e: BaseException) -> UDFCallError:
        err = UDFCallError(f"UDF {self.name} ({self.ref}) raised {type(e).__name__}: {e}")
        err.__cause__ = e
        return err

    def call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """One row's call (a batched UDF gets a batch of one; an async one runs on the event loop)."""
        if self.skipped(args, kwargs):
            return None
        if self.batch_size is not None:
            out = self.call_batch([[a] for a in args], kwargs)[0]
            if isinstance(out, BaseException):
                raise out
            return out
        if self.is_async:
            out = self.call_async([(args, kwargs)])[0]
            if isinstance(out, BaseException):
                raise out
            return out
        with self._limit:
            try:
                result = self.fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the row's error, naming the UDF
                raise self._failed(e) from e
        return self._result(result)

    def _result(self, value: Any) -> Any:
        try:
            return coerce_result(value, self.signature.returns)
        except Exception as e:  # noqa: BLE001 - a value the column cannot hold is that row's error
            raise UDFCallError(f"UDF {self.name} ({self.ref}) {e}") from None

    def skipped(self, args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        """Whether a parameter that does not allow None gets None: then, as in Pixeltable, the function is
        not called and the result is None (a row without a value has nothing to compute from)."""
        if self.signature is None:
            return False
        params = self.signature.params
        for p, v in (*zip(params, args), *((next((q for q in params if q.name == k), None), v)
                                            for k, v in kwargs.items())):
            if v is None and p is not None and not p.nullable:
                return True
        return False

    def call_batch(self, columns: Sequence[list[Any]], kwargs: dict[str, Any]) -> list[Any]:
        """A batched UDF on lists of argument values (one list per batched parameter, in order); at most
        `batch_size` rows per call. Returns one result (or the exception for that row) per row."""
        n = len(columns[0]) if columns else 0
        out: list[Any] = []
        for start in range(0, n, self.batch_size or n or 1):
            chunk = [c[start:start + self.batch_size] for c in columns]
            size = len(chunk[0])
            try:
                with self._limit:
                    results = self.fn(*chunk, **kwargs)
                results = list(results)
                if len(results) != size:
                    raise UDFCallError(f"UDF {self.name} ({self.ref}) returned {len(results)} results for a "
                                       f"batch of {size}")
            except UDFCallError as e:
                out += [e] * size
                continue
            except Exception as e:  # noqa: BLE001 - every row of the failed call gets the error
                out += [self._failed(e)] * size
                continue
            for r in results:
                try:
                    out.append(self._result(r))
                except UDFCallError as e:
                    out.append(e)
        return out

    def call_async(self, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[Any]:
        """Run an async UDF's calls concurrently (at most `max_concurrency` at a time in this process) on the
        shared event loop; returns each result, or the exception for that call."""
        return run_coroutine(self._gather(calls))

    async def _gather(self, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]) -> list[Any]:
        if self._async_limit is None:
            self._async_limit = asyncio.Semaphore(self.max_concurrency)
        limit = self._async_limit

        async def one(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
            async with limit:
                try:
                    return self._result(await self.fn(*args, **kwargs))
                except UDFCallError as e:
                    return e
                except Exception as e:  # noqa: BLE001 - the row's error
                    return self._failed(e)

        return list(await asyncio.gather(*(one(a, k) for a, k in calls)))


def _initializing(module: str) -> bool:
    """Whether `module` is being imported (its code is still running)."""
    spec = getattr(sys.modules.get(module), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _holds_expression(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_expression(v) or registry.is_expression(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_expression(v) or registry.is_expression(v) for v in value)
    return False


_LOADED: dict[str, UDF] = {}
_LOADED_LOCK = threading.Lock()
_VERSION_LOCK = threading.Lock()  # a UDF's function and version change together (a reloaded module)


def udf(fn: Callable[..., Any] | None = None, *, batch_size: int | None = None,
        max_concurrency: int | None = None, version: str | None = None) -> Any:
    """Decorator: `@pxt.udf`, `@pxt.udf(batch_size=16)`, `@pxt.udf(max_concurrency=4)`,
    `@pxt.udf(version="v2")`.

    Parameter and return hints map to column types: `PIL.Image.Image` <-> pxt.Image; str, int, float,
    bool; dict / list / pxt.Json <-> pxt.Json; pxt.Video / pxt.Audio / pxt.Document (a local path in, the
    path of a file the function wrote out). `batch_size`: the function takes and returns `pxt.Batch[...]`
    lists of up to that many rows. `async def` functions run concurrently, at most `max_concurrency` (default
    16) at a time; plain functions run one call at a time unless `max_concurrency` says they are thread-safe.
    `version`: the code version of the column's values, as you say (nothing is hashed): change it to make the
    column stale, keep it to edit the code without recomputing. Without it, the version is a hash of the
    function and of the functions and constants of its module it uses (see `code_version_of`).
    """
    def wrap(f: Callable[..., Any]) -> UDF:
        if isinstance(f, UDF):
            raise UDFDefinitionError(f"{f.ref} is already a UDF")
        if not callable(f):
            raise UDFDefinitionError(f"@pxt.udf decorates a function, not {f!r}")
        made = UDF(f, batch_size=batch_size, max_concurrency=max_concurrency, version=version)
        if made.problem is not None:  # as Pixeltable: an invalid definition raises where it is defined
            raise UDFDefinitionError(f"UDF {made.ref}: {made.problem}")
        return made

    return wrap(fn) if fn is not None else wrap


def _not_a_value(v: Any) -> bool:
    return isinstance(v, type) or inspect.isfunction(v) or inspect.isbuiltin(v) or inspect.ismodule(v) \
        or inspect.ismethod(v)


# -- the event loop async UDFs run on ----------------------------------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, on its own thread: async UDFs run there whatever thread computes the
    rows, including a notebook's (whose own loop is already running), and clients keep their connections
    between batches."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="pxt-async-udfs", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _forget_loop() -> None:  # a forked child has the parent's loop object but not its thread
    global _LOOP, _LOOP_LOCK
    _LOOP, _LOOP_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_loop)


def run_coroutine(coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, _loop()).result()


__all__ = ["udf", "UDF", "Batch", "UDFDefinitionError", "UDFCallError", "coerce_result", "column_type_of",
           "Audio", "Document", "Video"]
