"""Tables declared in YAML: the `pxt_assets.MediaTableComponent` Dagster Component.

    # pxt_assets/defs/<name>/defs.yaml
    type: pxt_assets.MediaTableComponent
    attributes:
      path: blob_storage_demo/media
      schema: {source_image: Image}
      columns:
        rotated:
          function: image.rotate              # a built-in by name, or a built-in or @pxt.udf by import path
          args: [{column: source_image}, 90]
          destination: "{{ env('ROTATED_DEST', '/data/rotated') }}"
        width: {function: image.width, args: [{column: source_image}]}
        serving_url:
          function: net.presigned_url
          args: [{column: rotated, property: fileurl}, 3600]
      views:
        - path: blob_storage_demo/frames
          iterator: {function: video.frame_iterator, args: [{column: video}], kwargs: {fps: 1}}
      watch: {prefix: "s3://bucket/incoming/", interval_seconds: 30}

An argument is a YAML value, a column (`{column: name}`, with `property: fileurl` for one of its properties)
or another call (`{function: ..., args: [...], kwargs: {...}}`); lists and mappings may hold either.

Building a table touches its destinations (a missing folder, a bucket that does not answer): a table that
cannot be built does not take the code location down. Its assets are still listed, each with the error as its
description, and materializing them fails with that error.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from pxt_assets.redaction import redact
from pxt_assets.spec import SpecError, parse_table_path

log = logging.getLogger(__name__)

META_LOAD_ERROR = "pxt/load_error"


class CallModel(dg.Model, dg.Resolvable):
    """A call of a function: `function` is a built-in's name ('image.rotate'), or the import path of a
    built-in or of a `@pxt.udf` ('my_project.udfs.caption'); `args` and `kwargs` are its arguments."""

    function: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ColumnModel(CallModel):
    """A computed column: the call that computes it, and (media columns) where its files go."""

    destination: str | None = None
    #: false leaves the column out (e.g. `"{{ env('DEST', '') != '' }}"`: a column only some deployments have)
    enabled: bool = True


class ViewModel(dg.Model, dg.Resolvable):
    """A view of the table: rows made by an iterator over each of its rows (frames, audio segments, pages)."""

    path: str
    iterator: CallModel
    destination: str | None = None
    columns: dict[str, ColumnModel] = Field(default_factory=dict)


class WatchModel(dg.Model, dg.Resolvable):
    """A sensor (or, with `cron_schedule`, a schedule) that turns new objects under `prefix` into rows.
    An empty prefix (e.g. an unset `{{ env('WATCH', '') }}`) watches nothing."""

    prefix: str = ""
    interval_seconds: int = 30
    max_batch_rows: int = 1000
    max_batches_per_tick: int = 10
    column: str | None = None
    cron_schedule: str | None = None
    suffixes: list[str] | None = None


class MediaTableComponent(dg.Component, dg.Model, dg.Resolvable):
    """A media table (and its views) declared in `defs.yaml`: each column is an asset, as with
    `pxt.MediaTable` in Python. See the module's docstring for the YAML."""

    path: str
    #: inserted columns: name -> type (Image, Video, Audio, Document, String, Int, Float, Bool, Json)
    table_schema: dict[str, str] = Field(alias="schema")
    columns: dict[str, ColumnModel] = Field(default_factory=dict)
    views: list[ViewModel] = Field(default_factory=list)
    watch: WatchModel | None = None
    #: computed columns follow each new batch (Dagster declarative automation)
    automation: bool = True
    #: make missing local destination folders (Pixeltable, and by default this component, want them made first)
    create_local_destinations: bool = False

    model_config = {"populate_by_name": True}

    @staticmethod
    @dg.template_var
    def pxt_home() -> str:
        """`{{ pxt_home }}`: the PIXELTABLE_HOME folder (config.toml, media, the row store)."""
        from pxt_assets.config import load_settings

        return str(load_settings().home)

    def build_tables(self) -> list[Any]:
        """The table, then its views, with every column added (destinations validated as in Python)."""
        from pxt_assets.api import MediaTable, MediaView
        from pxt_assets.media import type_named

        try:
            schema = {name: type_named(t) for name, t in self.table_schema.items()}
        except ValueError as e:
            raise SpecError(f"table {self.path!r}: {e}") from None
        table = MediaTable(self.path, schema, automation=self.automation)
        self._add_columns(table, self.columns)
        if self.watch is not None and self.watch.prefix.strip():
            w = self.watch
            table.watch(w.prefix.strip(), minimum_interval_seconds=w.interval_seconds,
                        max_batch_rows=w.max_batch_rows, max_batches_per_tick=w.max_batches_per_tick,
                        column=w.column, cron_schedule=w.cron_schedule,
                        suffixes=tuple(w.suffixes) if w.suffixes else None)
        out = [table]
        for v in self.views:
            iterator = _call(v.iterator, table, f"view {v.path!r}: iterator")
            view = MediaView(v.path, table, iterator, destination=self._destination(v.destination),
                             automation=self.automation)
            self._add_columns(view, v.columns)
            out.append(view)
        return out

    def _add_columns(self, table: Any, columns: dict[str, ColumnModel]) -> None:
        for name, col in columns.items():
            if not col.enabled:
                continue
            expr = _call(col, table, f"table {table.path!r}, column {name!r}")
            table.add_computed_column(destination=self._destination(col.destination), **{name: expr})

    def _destination(self, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None and self.create_local_destinations:
            from pxt_assets import fsutil, stores

            if stores.provider_of(value) == "local":
                fsutil.make_dirs(stores.path_of(value))
        return value

    def table_paths(self) -> list[str]:
        return [self.path, *(v.path for v in self.views)]

    def column_names(self) -> dict[str, list[str]]:
        """Every table's column names as declared (what its assets are called, even if it cannot be built)."""
        names = {self.path: [*self.table_schema, *(n for n, c in self.columns.items() if c.enabled)]}
        for v in self.views:
            names[v.path] = ["pos", *(n for n, c in v.columns.items() if c.enabled)]
        return names

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from pxt_assets.api.jobs import definitions

        try:
            self._tables = self.build_tables()
        except Exception as e:  # noqa: BLE001 - shown on this table's assets; the code location still loads
            self._tables = []
            return failed_table_definitions(self.column_names(), e)
        return definitions(*self._tables)

    @property
    def tables(self) -> list[Any]:
        """The tables `build_defs` made (none if they could not be built)."""
        return list(getattr(self, "_tables", []))


def failed_table_definitions(columns_by_table: dict[str, Sequence[str]], error: BaseException | str) -> dg.Definitions:
    """Assets for tables that could not be built: listed as usual (key, group) with the error as their
    description; materializing them fails with it."""
    message = redact(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    all_assets = []
    for path, columns in columns_by_table.items():
        try:
            parts = parse_table_path(path)
        except SpecError:
            continue
        slug = "__".join(parts)
        warnings.warn(f"pxt_assets: table {path!r} cannot be loaded: {message}", stacklevel=2)
        specs = [dg.AssetSpec(dg.AssetKey([*parts, c]), group_name=slug, kinds={"pxt"},
                              description=f"Table {path!r} cannot be loaded: {message}",
                              metadata={META_LOAD_ERROR: message}) for c in (list(columns) or ["table"])]

        all_assets.append(dg.multi_asset(specs=specs, name=f"{slug}__cannot_load", can_subset=True)(
            _failing(f"table {path!r} cannot be loaded: {message}", message)))
    return dg.Definitions(assets=all_assets)


def _failing(description: str, message: str):
    def fail(context):  # noqa: ANN001 - Dagster reads the annotation; none is allowed here
        raise dg.Failure(description=description, metadata={META_LOAD_ERROR: message})

    return fail


# -- expressions from YAML ------------------------------------------------------------------------------
def _call(model: CallModel, table: Any, where: str) -> Any:
    fn = _function(model.function, where)
    args = [_value(a, table, where) for a in model.args]
    kwargs = {k: _value(v, table, where) for k, v in model.kwargs.items()}
    try:
        return fn(*args, **kwargs)
    except (SpecError, TypeError, ValueError, AttributeError) as e:
        raise SpecError(f"{where}: {model.function}(...): {e}") from None


def _value(value: Any, table: Any, where: str) -> Any:
    if isinstance(value, dict) and "column" in value:
        extra = set(value) - {"column", "property"}
        if extra:
            raise SpecError(f"{where}: a column reference takes `column` and `property`, not {sorted(extra)}")
        name = value["column"]
        if name not in table.spec.columns:
            raise SpecError(f"{where}: unknown column {name!r} of {table.path!r}; "
                            f"columns: {list(table.spec.columns)}")
        col = table[name]  # not getattr: a column may be named like a method (where, select)
        if value.get("property"):
            try:
                return getattr(col, value["property"])
            except AttributeError as e:
                raise SpecError(f"{where}: {e}") from None
        return col
    if isinstance(value, dict) and "function" in value:
        return _call(CallModel(**value), table, where)
    if isinstance(value, dict):
        return {k: _value(v, table, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, table, where) for v in value]
    return value


def _function(name: str, where: str) -> Any:
    """What `function:` names, as something that builds an expression when called."""
    from pxt_assets.functions import registry
    from pxt_assets.functions.udf import UDF

    registry._load_builtins()
    if name in registry._FUNCTIONS:
        return lambda *a, **k: registry._CALL_FACTORY(name, tuple(a), k)  # type: ignore[misc]
    module_name, _, attr = name.rpartition(".")
    namespace = sorted(f for f in registry._FUNCTIONS if f.split(".")[0] == module_name)
    if namespace:
        raise SpecError(f"{where}: unknown function {name!r}; the {module_name} built-ins are: {', '.join(namespace)}")
    if not module_name:
        raise SpecError(f"{where}: unknown function {name!r}: give a built-in's name (e.g. 'image.rotate') or "
                        "an import path (module.function)")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SpecError(f"{where}: cannot import function {name!r}: {e}") from None
    if isinstance(obj, (UDF, registry.ExpressionFunction)):
        return obj
    for f in registry._FUNCTIONS.values():
        if f.fn is obj:
            return lambda *a, **k: registry._CALL_FACTORY(f.name, tuple(a), k)  # type: ignore[misc]
    raise SpecError(f"{where}: {name!r} is neither a built-in function nor a @pxt.udf")


__all__ = ["MediaTableComponent", "failed_table_definitions", "META_LOAD_ERROR"]
