"""Tables declared in YAML: the `pxt_assets.MediaTableComponent` Dagster Component.

    # pxt_assets/defs/<name>/defs.yaml
    type: pxt_assets.MediaTableComponent
    attributes:
      path: blob_storage_demo/media
      schema: {source_image: Image, video: Video}
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
      watch: {prefix: "s3://bucket/incoming/", interval_seconds: 30}   # queue: <SQS queue URL> for events

An argument is a YAML value, a column (`{column: name}`, with `property: fileurl` for one of its properties)
or another call (`{function: ..., args: [...], kwargs: {...}}`); lists and mappings may hold either.

Building a table touches its destinations (a missing folder, a bucket that does not answer): a table that
cannot be built does not take the code location down. Its assets are still listed, each with the error as its
description, and materializing them fails with that error.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from pxt_assets.api.jobs import META_LOAD_ERROR, failed_table_definitions
from pxt_assets.spec import SpecError

log = logging.getLogger(__name__)


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
    columns: dict[str, ColumnModel] | None = None


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
    #: an SQS queue URL receiving the bucket's s3:ObjectCreated:* events: no listing (an empty one: none)
    queue: str | None = None
    #: with a queue: list the prefix this often (seconds) for objects whose notification was lost
    reconcile_every: float | None = None


class MediaTableComponent(dg.Component, dg.Model, dg.Resolvable):
    """A media table (and its views) declared in `defs.yaml`: each column is an asset, as with
    `pxt.MediaTable` in Python. See the module's docstring for the YAML."""

    path: str
    #: inserted columns: name -> type (Image, Video, Audio, Document, String, Int, Float, Bool, Json)
    table_schema: dict[str, str] = Field(alias="schema")
    #: computed columns, in order (`columns:` with nothing under it is none)
    columns: dict[str, ColumnModel] | None = None
    views: list[ViewModel] | None = None
    watch: WatchModel | None = None
    #: computed columns follow each new batch (Dagster declarative automation)
    automation: bool = True
    #: make missing local destination folders (Pixeltable, and by default this component, want them made first)
    create_local_destinations: bool = False

    model_config = {"populate_by_name": True}

    _tables: list[Any] = PrivateAttr(default_factory=list)
    _load_error: BaseException | None = PrivateAttr(default=None)
    _declared: list[str] | None = PrivateAttr(default=None)  # column names of a defs.yaml that did not load

    @staticmethod
    @dg.template_var
    def pxt_home() -> str:
        """`{{ pxt_home }}`: the PIXELTABLE_HOME folder (config.toml, media, the row store)."""
        from pxt_assets.config import load_settings

        return str(load_settings().home)

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> MediaTableComponent:
        """As Dagster's, but a defs.yaml whose values cannot be resolved (an unset `{{ env('X') }}`) fails
        only its own table: its assets show the error, and the other tables load."""
        try:
            return super().load(attributes, context)
        except Exception as e:  # noqa: BLE001 - shown on this table's assets
            raw = attributes.model_dump() if attributes is not None else {}
            path = raw.get("path") if isinstance(raw.get("path"), str) and "{{" not in raw["path"] else None
            failed = cls.model_construct(path=path or f"pxt_defs/{context.path.name}",
                                         table_schema=dict(raw.get("table_schema") or raw.get("schema") or {}),
                                         columns={}, views=[], watch=None)
            failed._declared = [*(raw.get("columns") or {})]
            failed._load_error = e
            return failed

    def build_table(self) -> Any:
        """The table with every column added (destinations validated as in Python), and its watch."""
        from pxt_assets.api import MediaTable
        from pxt_assets.api.table import checked_at_once
        from pxt_assets.media import type_named

        try:
            schema = {name: type_named(t) for name, t in self.table_schema.items()}
        except ValueError as e:
            raise SpecError(f"table {self.path!r}: {e}") from None
        with checked_at_once():  # a YAML table reports what cannot be built itself (build_defs)
            table = MediaTable(self.path, schema, automation=self.automation)
        self._add_columns(table, self.columns or {})
        if self.watch is not None and self.watch.prefix.strip():
            w = self.watch
            queue = (w.queue or "").strip() or None  # an unset `{{ env('QUEUE', '') }}`: listing
            table.watch(w.prefix.strip(), minimum_interval_seconds=w.interval_seconds,
                        max_batch_rows=w.max_batch_rows, max_batches_per_tick=w.max_batches_per_tick,
                        column=w.column, cron_schedule=w.cron_schedule,
                        suffixes=tuple(w.suffixes) if w.suffixes else None,
                        queue=queue, reconcile_every=w.reconcile_every if queue else None)
        return table

    def build_view(self, table: Any, v: ViewModel) -> Any:
        from pxt_assets.api import MediaView
        from pxt_assets.api.table import checked_at_once

        iterator = _call(v.iterator, table, f"view {v.path!r}: iterator")
        with checked_at_once():
            view = MediaView(v.path, table, iterator, destination=self._destination(v.destination),
                             automation=self.automation)
        try:
            self._add_columns(view, v.columns or {})
        except BaseException:
            table._remove_view(view)  # a view that cannot be built makes no rows when its table is inserted into
            raise
        return view

    def build_tables(self) -> list[Any]:
        """The table, then its views (raises on the first that cannot be built)."""
        table = self.build_table()
        return [table, *(self.build_view(table, v) for v in self.views or [])]

    def _add_columns(self, table: Any, columns: dict[str, ColumnModel]) -> None:
        for name, col in columns.items():
            if not col.enabled:
                continue
            if name in RESERVED_NAMES:
                raise SpecError(f"table {table.path!r}, column {name!r}: {name!r} cannot name a column (it is an "
                                "argument of add_computed_column); choose another name")
            expr = _call(col, table, f"table {table.path!r}, column {name!r}")
            table.add_computed_column(destination=self._destination(col.destination), **{name: expr})

    def _destination(self, value: str | None) -> str | None:
        """A column's or view's `destination:` as written (an empty one is refused when it is resolved, naming
        the column: a template whose variable is unset must not send files to the default). A missing local
        folder is made first with `create_local_destinations`, unless it could never be a destination."""
        if value is None or not value.strip():
            return value
        value = value.strip()
        if self.create_local_destinations:
            from pxt_assets import fsutil, stores

            if stores.provider_of(value) == "local":
                try:
                    stores.check_destination(value)
                    stores.check_destination(stores.normalize_uri(value))
                except stores.StoreError:
                    return value  # refused when the column resolves it, naming the column; nothing made
                fsutil.make_dirs(stores.path_of(value))
        return value

    def table_paths(self) -> list[str]:
        return [self.path, *(v.path for v in self.views or [])]

    def _table_columns(self) -> list[str]:
        if self._declared is not None:
            return [*self.table_schema, *self._declared]
        return [*self.table_schema, *(n for n, c in (self.columns or {}).items() if c.enabled)]

    def _view_columns(self, v: ViewModel) -> list[str]:
        """A view's asset names as declared: pos, the iterator's outputs (when they can be told without
        building it), its computed columns."""
        outputs: list[str] = []
        try:
            from pxt_assets.functions import registry

            name = v.iterator.function.rsplit(".", 2)[-2:]
            fn = registry.get(".".join(name))
            if fn.iterator is not None:
                kwargs = {k: x for k, x in v.iterator.kwargs.items() if k in ("elements", "metadata")}
                outputs = list(fn.iterator.outputs(**kwargs))
        except Exception:  # noqa: BLE001 - the names are a courtesy of a table that cannot be built
            outputs = []
        return ["pos", *outputs, *(n for n, c in (v.columns or {}).items() if c.enabled)]

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The table's and its views' assets, jobs and sensor. A table or view that cannot be built gets
        assets of the same names that show why (see failed_table_definitions); a view failing leaves its
        base table as it is."""
        from pxt_assets.api.jobs import definitions

        self._tables = []
        if self._load_error is not None:
            return failed_table_definitions(self.path, self._table_columns(), self._load_error)
        try:
            table = self.build_table()
        except Exception as e:  # noqa: BLE001 - shown on this table's assets; the code location still loads
            because = f"its base table {self.path!r} cannot be loaded"
            return dg.Definitions.merge(
                failed_table_definitions(self.path, self._table_columns(), e),
                *(failed_table_definitions(v.path, self._view_columns(v), because, base=self.path)
                  for v in self.views or []))
        self._tables, failed = [table], []
        for v in self.views or []:
            try:
                self._tables.append(self.build_view(table, v))
            except Exception as e:  # noqa: BLE001 - as above, for this view alone
                failed.append(failed_table_definitions(v.path, self._view_columns(v), e, base=self.path))
        # inside the code location (pxt_assets.definitions), the location adds the automation sensor once
        return dg.Definitions.merge(definitions(*self._tables, automation_sensor=not LOCATION_BUILD.get()),
                                    *failed)

    @property
    def tables(self) -> list[Any]:
        """The tables `build_defs` made (none if they could not be built)."""
        return list(self._tables)


#: names add_computed_column takes as arguments: not column names
RESERVED_NAMES = frozenset({"destination", "if_exists", "instance"})

#: set while pxt_assets.definitions builds the code location (it adds the automation sensor once)
LOCATION_BUILD: contextvars.ContextVar[bool] = contextvars.ContextVar("pxt_location_build", default=False)


# -- expressions from YAML ------------------------------------------------------------------------------
def _call(model: CallModel, table: Any, where: str) -> Any:
    fn = _function(model.function, where)
    args = [_value(a, table, where) for a in model.args]
    kwargs = {k: _value(v, table, where) for k, v in model.kwargs.items()}
    try:
        return fn(*args, **kwargs)
    except (SpecError, TypeError, ValueError, AttributeError) as e:
        raise SpecError(f"{where}: {model.function}(...): {e}") from None


CALL_KEYS = frozenset({"function", "args", "kwargs"})  # a mapping of other keys is a value (an OpenAI tool spec)


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
    if isinstance(value, dict) and isinstance(value.get("function"), str) and set(value) <= CALL_KEYS:
        try:
            call = CallModel(**value)
        except Exception as e:  # noqa: BLE001 - pydantic's message, with the column it is about
            raise SpecError(f"{where}: {value['function']}(...): {e}") from None
        return _call(call, table, where)
    if isinstance(value, dict):
        return {k: _value(v, table, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, table, where) for v in value]
    return value


def _function(name: str, where: str) -> Any:
    """What `function:` names, as something that builds an expression when called."""
    from pxt_assets.functions import registry
    from pxt_assets.functions.udf import UDF

    if name in registry._FUNCTIONS:
        return registry.ExpressionFunction(name)
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
            return registry.ExpressionFunction(f.name)
    raise SpecError(f"{where}: {name!r} is neither a built-in function nor a @pxt.udf")


__all__ = ["MediaTableComponent", "failed_table_definitions", "META_LOAD_ERROR"]
