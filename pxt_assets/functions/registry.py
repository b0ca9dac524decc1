"""The functions expressions may call, by stable name ('image.rotate'), so expressions stay plain data."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pxt_assets.media import ColumnType


@dataclass(frozen=True)
class Function:
    name: str  # stable, serialised: 'image.rotate'
    fn: Callable[..., Any]
    applies_to: ColumnType | None  # type of the first argument, for method syntax (`t.img.rotate(90)`)
    returns: ColumnType | Callable[[Sequence[ColumnType | None]], ColumnType | None] | None
    is_property: bool = False  # `t.img.width` rather than `t.img.width()`
    #: receives the MediaRef-like value (uri) rather than the decoded image; e.g. presigned_url
    raw_args: bool = False
    #: an iterator (frame_iterator, audio_splitter, document_splitter): many output rows per input value
    iterator: "IteratorSpec | None" = None
    #: many calls at once: [(args, kwargs), ...] -> one result (or exception) per call; such a call is made for
    #: a chunk of rows together (as a batched UDF), e.g. presigned_url asking a control plane for 100 URLs
    batch: Callable[[list[tuple[list[Any], dict[str, Any]]]], list[Any]] | None = None

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def result_type(self, arg_types: Sequence[ColumnType | None]) -> ColumnType | None:
        return self.returns(arg_types) if callable(self.returns) and not isinstance(self.returns, ColumnType) else self.returns


@dataclass(frozen=True)
class IteratorSpec:
    """What an iterator makes: `run(input_path, **kwargs)` yields one dict per output row; `outputs(**kwargs)`
    gives the columns (name -> type) those dicts hold for these arguments; `input_type` is the column type
    it reads (a local file of it)."""

    input_type: ColumnType
    run: Callable[..., Any]
    outputs: Callable[..., dict[str, ColumnType]]


class IteratorArgumentError(ValueError):
    """An iterator's argument that cannot work on this input (an audio_splitter `max_size` smaller than one
    packet, paragraphs of a PDF): the view's row for the base row says so (`errortype` 'invalid'), and
    `create_view` raises it, as Pixeltable's does."""

    kind = "invalid"


_FUNCTIONS: dict[str, Function] = {}


def register(name: str, *, applies_to: ColumnType | None, returns: Any, is_property: bool = False, raw_args: bool = False,
             iterator: IteratorSpec | None = None, batch: Callable[..., list[Any]] | None = None):
    """Decorator: make a plain Python function callable from expressions under `name`."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _FUNCTIONS:
            raise ValueError(f"function {name!r} registered twice")
        _FUNCTIONS[name] = Function(name, fn, applies_to, returns, is_property, raw_args, iterator, batch)
        return fn

    return wrap


# Set by pxt_assets.spec when it loads: how a call of a registered function becomes an expression node. The
# registry (and the function modules) stay below spec: they never import it.
_CALL_FACTORY: Callable[[str, tuple[Any, ...], dict[str, Any]], Any] | None = None
_EXPR_TYPE: type | None = None


def set_expression_types(call_factory: Callable[[str, tuple[Any, ...], dict[str, Any]], Any], expr_type: type) -> None:
    global _CALL_FACTORY, _EXPR_TYPE
    _CALL_FACTORY, _EXPR_TYPE = call_factory, expr_type


def is_expression(value: Any) -> bool:
    """Whether `value` is an expression (a column, a call, ...) rather than a plain Python value."""
    return _EXPR_TYPE is not None and isinstance(value, _EXPR_TYPE)


class ExpressionFunction:
    """A registered function as users call it in expressions (`net.presigned_url(t.img.fileurl, 3600)`):
    calling it builds an expression node; `check` validates the arguments first."""

    def __init__(self, name: str, check: Callable[..., None] | None = None, doc: str | None = None) -> None:
        self.name = name
        self.check = check
        self.__doc__ = doc
        self.__name__ = name.rsplit(".", 1)[-1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.check is not None:
            self.check(*args, **kwargs)
            # Arguments given by keyword (`audio_splitter(audio=t.audio, duration=5.0)`, as Pixeltable's
            # documentation writes them) become the call's positional ones where the function takes them so: one
            # call has one form, whichever way it was written.
            params = list(inspect.signature(self.check).parameters.values())
            positional = [q.name for q in params if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
            if kwargs and any(name in kwargs for name in positional[len(args):]):
                bound = inspect.signature(self.check).bind(*args, **kwargs)
                taken = []
                for n in positional:
                    if n not in bound.arguments:
                        break  # a later one stays a keyword
                    taken.append(n)
                args = tuple(bound.arguments[n] for n in taken)
                kwargs = {k: v for k, v in kwargs.items() if k not in taken}
        if _CALL_FACTORY is None:  # pxt_assets/__init__ imports spec, which installs it: not reached in use
            raise RuntimeError("pxt_assets.spec is not loaded: import pxt_assets first")
        return _CALL_FACTORY(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<pxt function {self.name}>"


def get(name: str) -> Function:
    try:
        return _FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown function {name!r}") from None


def method_for(col_type: ColumnType | None, short_name: str) -> Function | None:
    """The function called as `<expr of col_type>.short_name`, if any."""
    for f in _FUNCTIONS.values():
        if f.applies_to is not None and f.applies_to == col_type and f.short_name == short_name:
            return f
    return None
