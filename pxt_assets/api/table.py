"""A media table: define it, add computed columns, insert batches, query it."""

from __future__ import annotations

import contextlib
import contextvars
import json
import pathlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from pxt_assets import assets as asset_builder
from pxt_assets import console, launch, lifecycle, rowstore, stores
from pxt_assets.api import jobs
from pxt_assets.api.query import Query, ResultSet
from pxt_assets.api.update_status import InsertResult, RowCountStats, UpdateStatus
from pxt_assets.assets.run import ON_ERROR_TAG, aborted_error
from pxt_assets.config import Settings, current_settings, load_settings
from pxt_assets.exceptions import Error, ErrorCode, RequestError
from pxt_assets.functions import udf as udf_module
from pxt_assets.instance import get_instance
from pxt_assets.io_managers import MediaIOManager, destinations
from pxt_assets.io_managers.ingest import check_scalar
from pxt_assets.io_managers.rows import new_batch_key, row_id
from pxt_assets.media import ColumnType, column_type, suffix_of
from pxt_assets.redaction import redact
from pxt_assets.rowstore.values import ERRORS_KEY
from pxt_assets.rowstore.values import problem as value_problem
from pxt_assets.spec import (
    REFERENCED,
    ColumnRef,
    ColumnSpec,
    Expr,
    InlineJson,
    Prop,
    SpecError,
    TableSpec,
    as_expr,
    check_column_name,
    check_iterator_call,
    code_included,
    parse_table_path,
)
from pxt_assets.watch import IMAGE_SUFFIXES, WatchSpec

__all__ = ["MediaTable", "InsertResult", "UpdateStatus", "ON_ERROR_TAG"]

def _on_error(on_error: str | None, settings: Settings) -> str:
    """The notebook API's on_error: the argument, else the deployment's default ([pixeltable] on_error /
    PIXELTABLE_ON_ERROR), else Pixeltable's 'abort'."""
    value = on_error if on_error is not None else settings.on_error
    if value not in ("abort", "ignore"):
        raise SpecError(f"on_error must be 'abort' or 'ignore', got {value!r}", error_code=ErrorCode.INVALID_ARGUMENT)
    return value


#: what a column of a table declared in a module shows as its destination until its definitions are built
PENDING = "checked when the definitions are built"

#: set while tables are made that check their destinations at once wherever they are made (the catalog's,
#: whose entry records the destinations; YAML components', which report failures themselves)
_CHECK_AT_ONCE: contextvars.ContextVar[bool] = contextvars.ContextVar("pxt_check_at_once", default=False)

#: the import system's own modules (frozen or not): a frame of theirs on the stack means a module is being imported
_IMPORT_SYSTEM = frozenset({"importlib._bootstrap", "importlib._bootstrap_external",
                            "_frozen_importlib", "_frozen_importlib_external"})


@contextlib.contextmanager
def checked_at_once() -> Iterator[None]:
    """Tables made within the block check their destinations as each is declared, even during an import."""
    token = _CHECK_AT_ONCE.set(True)
    try:
        yield
    finally:
        _CHECK_AT_ONCE.reset(token)


def declared_in_a_module() -> bool:
    """Whether a table made now is declared in a module: made while Python imports a module (`t =
    pxt.MediaTable(...)` at the top of a module Dagster loads, or of one it imports), outside checked_at_once().
    Such a table records its destinations and checks them when its definitions are built, with the
    resources given to pxt.definitions; one made in a notebook cell, a script, or a function called once the
    imports are done (a `@dg.definitions` function) checks them at once, as do catalog and YAML tables."""
    if _CHECK_AT_ONCE.get():
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") in _IMPORT_SYSTEM:
            return True
        frame = frame.f_back
    return False


#: the kinds of table a catalog entry can be, by name (a subclass registers itself: `class MediaView(MediaTable,
#: kind="view")`), so that this module finds a table's views without importing the module that defines them
_KINDS: dict[str, type[MediaTable]] = {}


class _CatalogCode(udf_module.CodeStore):
    """Pickled UDFs kept in the row store's database beside the catalog (the current settings' database)."""

    def put(self, sha256: str, text: str) -> None:
        rowstore.for_settings(current_settings()).put_code(sha256, text)

    def get(self, sha256: str) -> str | None:
        return rowstore.for_settings(current_settings()).get_code(sha256)


udf_module.set_code_store(_CatalogCode())

#: how many times an insert runs its batch when other processes keep adding columns meanwhile
_COLUMN_RACE_RUNS = 3


class MediaTable:
    """A table of media and computed columns, materialized as Dagster assets.

    >>> media = MediaTable("blob_storage_demo/media", {"source_image": Image})
    >>> media.add_computed_column(rotated=media.source_image.rotate(90), destination="/data/rotated")
    """

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            _KINDS[kind] = cls

    def __init__(self, path: str, schema: dict[str, ColumnType], *, settings: Settings | None = None,
                 automation: bool = True) -> None:
        """`automation`: computed columns follow each new batch of their sources automatically (Dagster
        declarative automation, evaluated by a running automation sensor)."""
        self._settings = settings
        self.automation = automation
        self._watch = None
        self._persistent = False  # a catalog table: every change is saved for other processes
        self._table_id: str | None = None  # a catalog table's identity and version, as this handle has it
        self._version: int | None = None
        self._entries: dict[str, str] = {}  # column -> its catalog entry (canonical JSON), as this handle has it
        self._lazy = declared_in_a_module()  # destinations checked when the definitions are built
        self._pending: dict[str, Callable[[], destinations.Resolved]] = {}  # column -> its destination, to check
        self.spec = TableSpec(parse_table_path(path))
        self._views: dict[tuple[str, ...], MediaTable] = {}  # views declared on it in this process (_add_view)
        if not schema:
            raise SpecError(f"table {path!r}: the schema needs at least one column")
        for name, col_type in schema.items():
            self._add_source_column(name, col_type, None)
        self._defs: dg.Definitions | None = None

    # -- schema ---------------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self._settings or load_settings()

    @property
    def path(self) -> str:
        return self.spec.display_path

    def columns(self) -> list[str]:
        """The names of the table's columns, in definition order (as Pixeltable's `Table.columns()`; a catalog
        table's as the catalog has them now)."""
        self._sync()
        return list(self.spec.columns)

    def add_column(self, *, destination: str | None = None, stored: bool | None = None, if_exists: str = "error",
                   **column: Any) -> UpdateStatus:
        """Add a source (inserted) column: `t.add_column(label=pxt.String)`, `pxt.Int | None`,
        `pxt.Required[pxt.Int]` (refused on a table with rows, as in Pixeltable). Its media go to
        input_media_dest if set, else stay in place; `destination=` and `stored=` are refused here, as in
        Pixeltable: they apply only to computed columns. Returns Pixeltable's UpdateStatus."""
        if len(column) != 1:
            raise SpecError("add_column() requires exactly one keyword argument (name=type)",
                            error_code=ErrorCode.UNSUPPORTED_OPERATION)
        (name, col_type), = column.items()
        if stored is not None:
            raise SpecError(f"Column {name!r}: `stored` only applies to computed columns",
                            error_code=ErrorCode.UNSUPPORTED_OPERATION)
        if if_exists not in ("error", "ignore", "replace", "replace_force"):
            raise SpecError(f"if_exists must be one of: ['error', 'ignore', 'replace', 'replace_force'], got "
                            f"{if_exists!r}", error_code=ErrorCode.INVALID_ARGUMENT)
        self._sync()
        if name in self.spec.columns and if_exists == "ignore":
            return UpdateStatus()
        if name in self.spec.columns and if_exists.startswith("replace"):
            self.drop_column(name)
        col_type = _schema_type(name, col_type)
        if not col_type.nullable and self.batches() and self.count() > 0:
            raise SpecError(f"Cannot add non-nullable column {name!r} to table {self.path!r} with existing rows",
                            error_code=ErrorCode.UNSUPPORTED_OPERATION)
        self._add_source_column(name, col_type, destination)
        return UpdateStatus()

    def _add_source_column(self, name: str, col_type: Any, destination: str | None) -> None:
        self._sync()
        self._check_new(name)
        col_type = _schema_type(name, col_type)
        column = ColumnSpec(name, col_type, None, destination)
        self._place(column, lambda: destinations.resolve(name, computed=False, is_media=col_type.is_media,
                                                          explicit=destination, settings=self.settings))
        if self._persistent:
            self._add_to_catalog(column)
            return
        self.spec.columns[name] = column
        self._defs = None

    def add_computed_column(self, *, destination: str | pathlib.Path | None = None, if_exists: str = "error",
                            on_error: str | None = None, stored: bool | None = None, print_stats: bool = False,
                            instance: dg.DagsterInstance | None = None, **column: Expr) -> UpdateStatus:
        """Add a column computed from others, e.g. `rotated=t.source_image.rotate(90)`; its values are computed
        for the table's existing rows before it returns (Pixeltable's UpdateStatus says how many, with how
        many errors).

        `on_error` (Pixeltable's): 'abort' (the default, unless the deployment sets [pixeltable] on_error /
        PIXELTABLE_ON_ERROR) raises a pxt.Error naming the column and the row's input at the first row that
        fails, and the column is not added (what it wrote is deleted); 'ignore' adds it, each failed row
        keeping its error (`t.col.errormsg`, `t.col.errortype`).

        A column that is just another media column (`copy=t.img`) is a reference to its files, not a copy,
        unless a destination (the argument, or output_media_dest) says where copies go, as in Pixeltable.

        `destination` (media columns only) wins over output_media_dest and the default
        `$PIXELTABLE_HOME/media`; it is validated now (a missing local folder is an error naming the column),
        or, for a table declared in a module, when its definitions are built (see declared_in_a_module).
        """
        if len(column) != 1:
            raise SpecError("add_computed_column() requires exactly one keyword argument (name=expression)",
                            error_code=ErrorCode.UNSUPPORTED_OPERATION)
        (name, expr), = column.items()
        if destination is not None and not isinstance(destination, (str, pathlib.Path)):
            raise SpecError(f"Column {name!r}: `destination` must be a string or path, got "
                            f"{type(destination).__name__} {destination!r}", error_code=ErrorCode.TYPE_MISMATCH)
        if isinstance(destination, pathlib.Path):
            destination = str(destination)
        if stored is False and destination is not None:
            raise SpecError(f"Column {name!r}: `destination` only applies to stored computed columns",
                            error_code=ErrorCode.UNSUPPORTED_OPERATION)
        on_error = _on_error(on_error, self.settings)
        if isinstance(expr, (dict, list)):  # messages=[{'role': 'user', 'content': t.prompt}]: Json
            expr = as_expr(expr)
        if isinstance(expr, Expr):  # before anything changes: a bad expression leaves the table as it was
            try:
                expr.validate()
            except SpecError as e:
                raise type(e)(f"Column {name!r}: {e}") from None
            if isinstance(expr, InlineJson) and any(c.col_type is not None and c.col_type.is_media
                                                    for c in expr.children()):
                raise SpecError(f"Column {name!r}: a Json column cannot hold media ({expr!r}); store "
                                "`.fileurl`s, or pass the list to a function (e.g. openai.chat_completions)")
            if self._persistent:
                try:  # a notebook's UDF is stored with the table: it must serialise
                    with code_included():
                        expr.to_dict()
                except SpecError:
                    raise
                except Exception as e:  # noqa: BLE001 - cloudpickle's errors name neither column nor UDF
                    udfs = sorted({c.udf.ref for c in expr.walk() if getattr(c, "udf", None) is not None})
                    raise SpecError(f"Column {name!r}: UDF {', '.join(udfs)} cannot be stored with the table "
                                    f"({type(e).__name__}: {e}); define it in an importable module, or keep "
                                    "unpicklable objects (locks, clients) out of the globals it uses") from None
        if if_exists not in ("error", "ignore", "replace", "replace_force"):
            raise SpecError(f"if_exists must be one of: ['error', 'ignore', 'replace', 'replace_force'], got "
                            f"{if_exists!r}", error_code=ErrorCode.INVALID_ARGUMENT)
        self._sync()
        if name in self.spec.columns:
            if if_exists == "ignore":
                return UpdateStatus()
            if if_exists == "error":
                raise SpecError(f"table {self.path!r} already has a column {name!r}",
                                error_code=ErrorCode.COLUMN_ALREADY_EXISTS)
            if self._persistent and self.batches():
                self.drop_column(name, instance=instance)  # its files and values go with it
            elif self._persistent:
                self._remove_from_catalog(name)  # and its fields, in the same transaction
            else:
                self.spec.columns.pop(name)
                self._pending.pop(name, None)
                self._rowstore().drop_row_column(self.spec.slug, name)  # its SQL type may change
        self._check_new(name)
        if not isinstance(expr, Expr):
            raise SpecError(f"Column {name!r}: expected an expression over {self.path!r}'s columns, got {expr!r}")
        unknown = expr.columns() - set(self.spec.columns)
        if unknown:
            raise SpecError(f"Column {name!r}: reads unknown column(s) {sorted(unknown)} of {self.path!r}")
        if not expr.columns():
            raise SpecError(f"Column {name!r}: the expression must read at least one column")
        if isinstance(expr, Prop) and expr.prop == "localpath":
            raise SpecError(f"Column {name!r}: .localpath is machine-local and cannot be stored; use .fileurl")
        col_type = expr.col_type
        if col_type is None:
            raise SpecError(f"Column {name!r}: cannot tell the type of {expr!r}")
        column = ColumnSpec(name, col_type, expr, stored=stored is not False)
        if not column.stored:
            if column.is_file_list:
                raise SpecError(f"Column {name!r}: an iterator's column is stored (stored=False is refused)",
                                error_code=ErrorCode.UNSUPPORTED_OPERATION)
            # computed when read: no asset, no values, nothing to compute now (Pixeltable's stored=False)
            column.destination, column.destination_source = None, "not stored (computed when read)"
            if self._persistent:
                self._add_to_catalog(column, if_exists=if_exists)
            else:
                self.spec.columns[name] = column
                self._defs = None
            return UpdateStatus()
        is_reference = (isinstance(expr, ColumnRef) and col_type.is_media and destination is None
                        and not self.settings.output_media_dest)
        if column.writes_files and self._persistent and not is_reference:  # a catalog table: defined where it is shared
            _refuse_local_destination_when_shared(self, name, destination)
        if column.is_file_list:  # an iterator as a column: what it makes is written like computed media
            check_iterator_call(expr, self.spec.columns, f"Column {name!r}")
        column.destination_arg = destination
        if is_reference:
            # Pixeltable's: `copy=t.img` references the same files (no destination asks for copies)
            column.destination, column.destination_source = None, REFERENCED
        else:
            self._place(column, lambda: destinations.resolve(name, computed=True, is_media=column.writes_files,
                                                              explicit=destination, settings=self.settings))
        if self._persistent:
            if self._add_to_catalog(column, if_exists=if_exists) and self.batches():
                return self._backfill(name, instance, on_error=on_error)
            return UpdateStatus()
        self.spec.columns[name] = column
        self._defs = None
        return UpdateStatus()

    def _place(self, column: ColumnSpec, resolve: Callable[[], destinations.Resolved]) -> None:
        """Set where `column`'s files go (`resolve()`: the precedence rules and the destination's check): now,
        or, for a table declared in a module, when its definitions are built (see resolve_destinations)."""
        if self._lazy:
            column.destination, column.destination_source = None, PENDING
            self._pending[column.name] = resolve
            return
        resolved = resolve()
        column.destination, column.destination_source = resolved.uri, resolved.rule

    def resolve_destinations(self) -> None:
        """Resolve and check the destinations a table declared in a module recorded (nothing to do for others),
        with the stores' clients of this moment (the resources given to pxt.definitions). Done when its
        definitions are built, or by its first insert; raises the first that cannot be used, naming its column."""
        for name, resolve in list(self._pending.items()):
            resolved = resolve()
            column = self.spec.columns[name]
            column.destination, column.destination_source = resolved.uri, resolved.rule
            del self._pending[name]

    def watch(self, prefix: str, *, minimum_interval_seconds: int = 30, max_batch_rows: int = 1000,
              max_batches_per_tick: int = 10, column: str | None = None, cron_schedule: str | None = None,
              suffixes: tuple[str, ...] | None = None, lookback_seconds: float = 300.0,
              queue: str | None = None, reconcile_every: float | None = None) -> None:
        """Watch `prefix` (s3://, gs://, Azure, R2/B2/Tigris, or a local folder) for new objects.

        `pxt.definitions(t)` then contains a sensor `<dir>__<name>_sensor` (running by default): each tick
        turns unseen objects into new batches of at most `max_batch_rows` rows, inserted into `column`
        (default: the first media column) and materialized. With `cron_schedule`, a schedule
        `<dir>__<name>_schedule` does the same on a fixed cadence instead. `suffixes` limits the objects
        taken (default for Image columns: common image extensions).

        `queue` (an SQS queue URL, for an `s3://` prefix): new objects come from the bucket's
        `s3:ObjectCreated:*` notifications delivered to that queue instead of listing the prefix
        (`python -m pxt_assets watch-setup TABLE` configures the bucket and the queue); the same sensor, each
        object taken once. `reconcile_every` (seconds) then also lists the prefix that often, for objects
        whose notification was lost (docs/sensors.md).
        """
        self._sync()
        media_cols = [c for c in self.spec.source_columns() if c.is_media]
        name = column or (media_cols[0].name if media_cols else None)
        if name is None or name not in self.spec.columns or self.spec.columns[name].is_computed:
            raise SpecError(f"watch: {self.path!r} needs an inserted media column to fill, got {column!r}")
        if max_batch_rows < 1 or max_batches_per_tick < 1 or minimum_interval_seconds < 1:
            raise SpecError("watch: max_batch_rows, max_batches_per_tick and minimum_interval_seconds must be >= 1")
        provider = stores.provider_of(prefix)
        if provider == "http":
            raise SpecError(f"watch: {prefix!r} cannot be listed; watch a bucket prefix or a local folder")
        prefix = stores.normalize_uri(prefix)
        _check_queue(prefix, queue, reconcile_every, cron_schedule)
        if suffixes is None and self.spec.columns[name].col_type.name == "Image":
            suffixes = IMAGE_SUFFIXES
        watch = WatchSpec(prefix, name, minimum_interval_seconds, max_batch_rows, max_batches_per_tick,
                          lookback_seconds, cron_schedule, tuple(suffixes) if suffixes else None, queue,
                          None if reconcile_every is None else float(reconcile_every))
        if self._persistent:
            def change(spec: TableSpec, doc: dict[str, Any]) -> dict[str, Any]:
                col = spec.columns.get(name)
                if col is None or col.is_computed:
                    raise SpecError(f"watch: column {name!r} of {self.path!r} was dropped since this handle was "
                                    "loaded (perhaps by another process)")
                doc["watch"] = watch.to_dict()
                return doc

            self._change(change)
            return
        self._watch = watch
        self._defs = None

    # -- catalog ----------------------------------------------------------------------------------------
    def _doc(self) -> dict[str, Any]:
        return {**self.spec.to_dict(with_code=True), "automation": self.automation,
                "watch": self._watch.to_dict() if self._watch is not None else None}

    # A catalog table's handle holds the table as of one version of its catalog document. Each call first
    # reads the version (`_sync`): another process may have changed the table (the handle takes the new
    # document) or dropped or re-created it (an error: a re-created table is another table). Each change is
    # compare-and-set on the document as the catalog has it (`_change`), so no process's change is lost.

    def _create_in_catalog(self) -> bool:
        """Record this new table in the catalog (its row table made in the same transaction): False, and
        nothing done, if a table of its path is there already (exactly one of two creators wins)."""
        store = self._rowstore()
        parent = "/".join(self.spec.path[:-1])
        if not store.dir_exists(parent):
            raise SpecError(f"directory {parent!r} does not exist; create it with pxt.create_dir")
        entry = store.create_table_doc(self.path, self.spec.slug, self._doc(), rowstore.row_columns(self.spec))
        if entry is None:
            return False
        self._persistent = True
        self._entries = {c["name"]: _canonical(c) for c in entry.doc["columns"]}
        self._table_id, self._version = entry.table_id, entry.version
        return True

    def _sync(self) -> None:
        """A catalog table: this handle brought to the catalog's version of the table (one lookup when nothing
        changed). Raises if the table was dropped, or dropped and created again, since the handle was loaded."""
        if not self._persistent:
            return
        store = self._rowstore()
        token = store.table_token(self.path)
        if token is not None and token == (self._table_id, self._version):
            return
        entry = store.table_entry(self.path) if token is not None else None
        if entry is None or (self._table_id is not None and entry.table_id != self._table_id):
            raise self._gone(replaced=entry is not None)
        self._adopt(entry)

    def _gone(self, replaced: bool) -> SpecError:
        if replaced:
            return SpecError(f"table {self.path!r} was dropped and created again since this handle was loaded "
                             "(create_table(..., if_exists='replace'), perhaps in another process); get the new "
                             f"table with pxt.get_table({self.path!r})")
        return SpecError(f"table {self.path!r} was dropped since this handle was loaded (perhaps by another "
                         "process)")

    def _columns_from(self, doc: dict[str, Any], made: dict[str, tuple[str, ColumnSpec]] | None = None
                      ) -> tuple[dict[str, ColumnSpec], dict[str, str]]:
        """The columns of a catalog document, and each one's entry (canonical JSON). A column this handle
        has with the same entry (or one of `made`, name -> (entry, column): columns it is adding) is the
        handle's own object (a notebook's UDF stays the function the notebook defined); others are read."""
        have = {n: (self._entries.get(n), c) for n, c in self.spec.columns.items()}
        have.update(made or {})
        columns: dict[str, ColumnSpec] = {}
        entries: dict[str, str] = {}
        types: dict[str, Any] = {}
        for c in doc["columns"]:
            key = _canonical(c)
            known = have.get(c["name"])
            column = known[1] if known is not None and known[0] == key else ColumnSpec.from_dict(c, types)
            columns[column.name], entries[column.name], types[column.name] = column, key, column.col_type
        return columns, entries

    def _adopt(self, entry: rowstore.TableEntry, made: dict[str, tuple[str, ColumnSpec]] | None = None) -> None:
        """Take `entry` (this table as the catalog has it) as this handle's state: columns, watch, version."""
        doc = entry.doc
        columns, entries = self._columns_from(doc, made)
        self.spec.columns.clear()
        self.spec.columns.update(columns)
        self._entries = entries
        self.automation = bool(doc.get("automation", True))
        w = doc.get("watch")
        self._watch = WatchSpec(**{**w, "suffixes": tuple(w["suffixes"]) if w.get("suffixes") else None}) if w else None
        self._table_id, self._version = entry.table_id, entry.version
        self._defs = None

    def _change(self, change: Callable[[TableSpec, dict[str, Any]], dict[str, Any] | None],
                made: dict[str, tuple[str, ColumnSpec]] | None = None) -> None:
        """Change this catalog table: `change(spec, doc)` edits `doc`, the table's document as the catalog has
        it now (`spec`: its columns), and returns it, or None when there is nothing to do; it raises when the
        change no longer applies. The document is written compare-and-set (with the DDL its columns need);
        if another change came first, it is read again and `change` asked again. The handle then holds the
        table as written. `made`: the columns the change adds (see _columns_from)."""
        path = self.spec.path

        def apply(entry: rowstore.TableEntry):
            columns, entries = self._columns_from(entry.doc, made)
            doc = change(TableSpec(path, columns), json.loads(entry.text))  # a copy: the entry stays as read
            if doc is None:
                return None
            known = {**(made or {}), **{n: (entries[n], c) for n, c in columns.items()}}
            return doc, rowstore.row_columns(TableSpec(path, self._columns_from(doc, known)[0]))

        try:
            entry = self._rowstore().change_table_doc(self.path, self.spec.slug, apply, table_id=self._table_id)
        except rowstore.TableGone as e:
            raise self._gone(e.replaced) from None
        self._adopt(entry, made)

    def _add_to_catalog(self, column: ColumnSpec, *, if_exists: str = "error") -> bool:
        """Add `column` to this catalog table, to the table as the catalog has it now. False if a column of
        its name is there (added meanwhile, by another process) and if_exists='ignore'; an error naming the
        table if it is there otherwise, or if a column it reads is gone."""
        with code_included():
            entry = column.to_dict()
        added = False

        def change(spec: TableSpec, doc: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal added
            added = False
            if column.name in spec.columns:
                if if_exists == "ignore":
                    return None
                raise SpecError(f"table {self.path!r} already has a column {column.name!r} (added since this "
                                "handle was loaded, perhaps by another process)")
            gone = sorted(column.expr.columns() - set(spec.columns)) if column.expr is not None else []
            if gone:
                raise SpecError(f"Column {column.name!r}: reads column(s) {gone} of {self.path!r}, dropped since "
                                "this handle was loaded (perhaps by another process)")
            doc["columns"].append(entry)
            added = True
            return doc

        self._change(change, made={column.name: (_canonical(entry), column)})
        return added

    def _remove_from_catalog(self, name: str, check: Callable[[TableSpec], None] | None = None) -> bool:
        """Remove column `name` from this catalog table, and its fields from the row table, in one
        transaction. False if it is gone already (another process dropped it); `check(spec)` raises when the
        table as the catalog has it now cannot lose it."""
        removed = False

        def change(spec: TableSpec, doc: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal removed
            removed = False
            if name not in spec.columns:
                return None
            if check is not None:
                check(spec)
            doc["columns"] = [c for c in doc["columns"] if c.get("name") != name]
            removed = True
            return doc

        self._change(change)
        return removed

    def _row_table(self) -> rowstore.RowTable:
        """This table's row table, holding its columns (a catalog table: brought to the catalog's version
        first, and only while the catalog has it)."""
        self._sync()
        try:
            return self._rowstore().for_spec(self.spec, table_id=self._table_id if self._persistent else None)
        except rowstore.TableGone as e:
            raise self._gone(e.replaced) from None

    @staticmethod
    def from_doc(doc: dict[str, Any]) -> MediaTable:
        """A catalog document as a table, or as a view (a MediaView) when it records one; its version and
        identity are taken from the catalog at its first call. Prefer from_entry."""
        return MediaTable.from_entry(rowstore.TableEntry(doc["path"], json.dumps(doc, default=str), None, None))

    @staticmethod
    def from_entry(entry: rowstore.TableEntry) -> MediaTable:
        """A catalog table as recorded, or a view (a MediaView) when it records one: destinations are not
        resolved again (the config may have changed)."""
        return (_KINDS["view"] if entry.doc.get("view") else MediaTable)._from_entry(entry)

    @classmethod
    def _from_entry(cls, entry: rowstore.TableEntry) -> MediaTable:
        table = cls.__new__(cls)
        table._settings = None
        table.spec = TableSpec(parse_table_path(entry.doc["path"]))
        table._entries = {}
        table._defs = None
        table._persistent = True
        table._lazy, table._pending = False, {}
        table._views = {}
        table._load_parts(entry.doc)
        table._adopt(entry)
        return table

    def _load_parts(self, doc: dict[str, Any]) -> None:
        """What a kind of table reads from its document once, when loaded (a view: its base and iterator)."""

    def _add_view(self, view: MediaTable) -> None:
        """Record a view declared on this table in this process (a MediaView does it when it is made): each
        batch inserted through this object makes its rows in it too. Catalog views are found in the catalog;
        this is how views of tables declared in code or YAML are. (Deleting and dropping find every view from
        the database, wherever it was declared: see rowstore/views.py.)"""
        self.__dict__.setdefault("_views", {})[view.spec.path] = view

    def _remove_view(self, view: MediaTable) -> None:
        if self.__dict__.get("_views", {}).get(view.spec.path) is view:
            del self._views[view.spec.path]

    def _views_to_run(self) -> list[MediaTable]:
        """The views a new batch of this table makes rows in: the catalog's (as recorded there now), then those
        declared on this object (_add_view) that the catalog does not hold."""
        out: dict[tuple[str, ...], MediaTable] = {}
        if self._persistent:
            for entry in self._rowstore().view_entries(self.path):
                view = MediaTable.from_entry(entry)
                out[view.spec.path] = view
        for path, view in self.__dict__.get("_views", {}).items():
            if not view._persistent:  # a catalog view dropped since (by any process) makes no rows
                out.setdefault(path, view)
        return list(out.values())

    def _backfill(self, column: str, instance: dg.DagsterInstance | None, *, on_error: str = "ignore") -> UpdateStatus:
        """Compute `column` for every existing batch (what Pixeltable does before add_computed_column returns).
        on_error='abort': at the first row error the column is dropped (what it wrote deleted) and a pxt.Error
        raised naming the column, the row and its input."""
        try:
            return self._compute_column(column, instance, on_error)
        except _Aborted as e:
            self.drop_column(column, instance=instance)
            raise e.error from None

    def _compute_column(self, column: str, instance: dg.DagsterInstance | None, on_error: str) -> UpdateStatus:
        if instance is None:
            instance = get_instance()
        started = time.monotonic()
        key = asset_builder.asset_key(self.spec, column)
        job = self.definitions().resolve_job_def(asset_builder.batch_job_name(self.spec)).get_subset(
            asset_selection={key})
        # Committed batches: one still pending computes every column (this one too) when it is run. A batch
        # that commits meanwhile (run by another process, with the table as it was) is picked up on the next
        # pass, until a pass finds none.
        done: set[str] = set()
        tags = {ON_ERROR_TAG: "abort"} if on_error == "abort" else None
        shared = launch.is_shared(instance)
        partitions = asset_builder.partitions_name(self.spec)
        while todo := [b for b in self._rowstore().batches(self.spec.slug, rowstore.COMMITTED) if b not in done]:
            known = set(instance.get_dynamic_partitions(partitions))
            if missing := [b for b in todo if b not in known]:  # batches another instance created
                instance.add_dynamic_partitions(partitions, missing)
            for batch in todo:
                if shared:  # the whole batch job, through the deployment: unchanged columns are skipped
                    run = launch.submit_and_wait(instance, asset_builder.batch_job_name(self.spec), batch,
                                                 tags=tags)
                    if run.status != dg.DagsterRunStatus.SUCCESS:
                        detail = launch.failure_of(instance, run.run_id)
                        if (aborted := aborted_error(detail)) is not None:
                            raise _Aborted(aborted)
                        raise RuntimeError(f"computing {self.path}.{column} for batch {batch} failed: {detail}")
                    done.add(batch)
                    continue
                try:
                    with console.progress_bars():
                        result = launch.execute_in_process(job, instance=instance, partition_key=batch, tags=tags,
                                                           raise_on_error=False, run_config=console.run_config())
                except dg.DagsterUnknownPartitionError:
                    if batch not in self._rowstore().batches(self.spec.slug):
                        done.add(batch)  # deleted meanwhile (by another process): nothing to compute
                        continue
                    raise
                if not result.success and batch not in self._rowstore().batches(self.spec.slug):
                    done.add(batch)  # deleted while it ran
                    continue
                if not result.success:
                    failure = next((e for e in result.all_events if e.is_step_failure), None)
                    detail = _root_message(failure.event_specific_data.error) if failure else "see the run's logs"
                    if (aborted := aborted_error(detail)) is not None:
                        raise _Aborted(aborted)
                    raise RuntimeError(f"computing {self.path}.{column} for batch {batch} failed: {detail}")
                done.add(batch)
        rows = self.count()
        if column not in self.spec.columns:
            raise SpecError(f"column {column!r} of {self.path!r} was dropped (perhaps by another process) while "
                            "its values were being computed")
        errors = self.where(Prop(ColumnRef(column, self.spec.columns[column].col_type), "errormsg") != None).count()  # noqa: E711
        seconds = time.monotonic() - started
        print(f"Added {rows} column value{'' if rows == 1 else 's'} with {errors} error{'' if errors == 1 else 's'} "
              f"in {seconds:.2f} s ({rows / max(seconds, 1e-9):.2f} rows/s)")
        return UpdateStatus(cols_with_excs=[f"{self.spec.name}.{column}"] if errors else [],
                            row_count_stats=RowCountStats(upd_rows=rows, num_excs=errors),
                            num_errors=errors, seconds=seconds, batches=tuple(sorted(done)),
                            batch=max(done) if done else None)

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(repr(c.col_type))}</td>"
            f"<td>{html.escape(repr(c.expr)) if c.expr is not None else ''}</td>"
            f"<td>{html.escape(_shown_destination(c) if c.is_media else '')}</td></tr>"
            for c in self.spec.columns.values()
        )
        return redact(f"<b>table {html.escape(self.path)!r}</b><table><tr><th>Column</th><th>Type</th>"
                      f"<th>Computed with</th><th>Destination</th></tr>{rows}</table>")

    def _check_new(self, name: str) -> None:
        check_column_name(name, self.path)
        from pxt_assets.dagster_compat import DISALLOWED_NAMES

        if name in DISALLOWED_NAMES:  # each column is a Dagster asset output, named after the column
            raise SpecError(f"table {self.path!r}: invalid column name {name!r}: Dagster reserves it (choose "
                            "another name)", error_code=ErrorCode.INVALID_COLUMN_NAME)
        if name in self.spec.columns:
            raise SpecError(f"table {self.path!r} already has a column {name!r} (duplicate column name)",
                            error_code=ErrorCode.COLUMN_ALREADY_EXISTS)

    def __getattr__(self, name: str) -> ColumnRef:
        if name.startswith("_") or name == "spec":
            raise AttributeError(name)
        columns = self.__dict__.get("spec").columns if "spec" in self.__dict__ else {}
        if name in columns:
            column = columns[name]
            if not column.stored:  # computed when read: its expression, named as the column in a select
                object.__setattr__(column.expr, "_pxt_name", name)
                return column.expr
            return ColumnRef(name, column.col_type)
        raise AttributeError(f"Unknown column {name!r}: table {self.__dict__['spec'].display_path!r} has no column "
                             f"{name!r}")

    def __getitem__(self, name: str) -> ColumnRef:
        return self.__getattr__(name)

    def __repr__(self) -> str:
        lines = [f"MediaTable {self.path!r}"]
        for c in self.spec.columns.values():
            what = f"= {c.expr!r}" if c.expr is not None else self._made_by(c.name)
            where = f"  -> {_shown_destination(c)} [{c.destination_source}]" if c.is_media else ""
            lines.append(f"  {c.name}: {c.col_type!r} {what}{where}")
        return redact("\n".join(lines))  # a constant in an expression may be a signed URL

    def _made_by(self, name: str) -> str:
        """How a column that is not computed gets its values (a view says more)."""
        return "(inserted)"

    # -- Dagster ----------------------------------------------------------------------------------------
    def assets_definitions(self) -> list[dg.AssetsDefinition]:
        self.resolve_destinations()  # the assets carry the table's spec, destinations included
        pdef = dg.DynamicPartitionsDefinition(name=asset_builder.partitions_name(self.spec))
        out = [asset_builder.build_source_asset(self.spec, pdef)]
        computed = asset_builder.build_computed_asset(self.spec, pdef, automation=self.automation)
        if computed is not None:
            out.append(computed)
        return out

    @property
    def partitions_def(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=asset_builder.partitions_name(self.spec))

    def definitions(self) -> dg.Definitions:
        """This table alone as Definitions (cached until the schema changes; not while a destination of a
        table declared in a module fails its check; a catalog table's, until another version of it)."""
        self._sync()  # a new version of a catalog table drops them
        if self._defs is None or self._pending:
            self._defs = jobs.definitions(self)
        return self._defs

    def _rowstore(self) -> rowstore.RowStore:
        return rowstore.for_settings(self.settings)

    # -- data -------------------------------------------------------------------------------------------
    def insert(self, rows: list[dict[str, Any]] | None = None, /, *, on_error: str | None = None,
               print_stats: bool = False, instance: dg.DagsterInstance | None = None,
               log=None, tags: dict[str, str] | None = None, _code_location: dict[str, Any] | None = None,
               _submit: bool | None = None, **values: Any) -> UpdateStatus:
        """Insert rows as one new batch and materialize every column for it on the Dagster instance.

        `rows` is a list of {column: value}; or pass one row as keywords (`t.insert(source_image=path)`).
        Media values are local paths, file:// or http(s):// URLs. Returns Pixeltable's UpdateStatus
        (`num_rows`, `num_excs`, ...; and ours: `batch`, `run_id`, `num_errors`).

        `on_error` (Pixeltable's): 'abort' (the default, unless the deployment sets [pixeltable] on_error /
        PIXELTABLE_ON_ERROR) raises a pxt.Error naming the column and the input at the first bad value,
        bad file or failed computed value, and nothing is inserted (the batch is rolled back: its rows never
        become visible, its files are deleted). 'ignore' keeps each bad row with its error, counted
        (`t.col.errormsg`, `t.col.errortype`): what the sensors and the insert job always do.
        A non-nullable column (`pxt.Required[...]`) without a value is refused either way.
        """
        if rows is not None and values:
            raise TypeError("insert() takes a list of rows or one row as keywords, not both")
        on_error = _on_error(on_error, self.settings)
        self._sync()
        rows = list(rows) if rows is not None else [values]
        if not rows:
            raise SpecError(f"insert into {self.path!r}: Cannot insert an empty sequence",
                            error_code=ErrorCode.UNSUPPORTED_OPERATION)
        sources = {c.name for c in self.spec.source_columns()}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise TypeError(redact(f"insert into {self.path!r}: row {i} is not a dict: {row!r}"))
            unknown = set(row) - sources
            if unknown:
                raise SpecError(f"insert into {self.path!r}: row {i} has unknown column(s) {sorted(unknown)}; "
                                f"insertable columns: {sorted(sources)}", error_code=ErrorCode.INVALID_COLUMN_NAME)
            _check_row(self, i, row, check_types=on_error == "abort")
        if on_error == "abort":
            tags = {**(tags or {}), ON_ERROR_TAG: "abort"}
        self.resolve_destinations()  # a table declared in a module whose definitions were not built
        if instance is None:
            instance = get_instance()
        started = time.monotonic()
        batch = new_batch_key()
        store = self._rowstore()
        self._row_table()
        # The manifest is in the database before the partition exists, so a run never sees a batch without
        # rows, and any worker that shares the database can run it.
        if launch.is_shared(instance) and launch.shared_deployment(self.settings):
            # Local files are uploaded before the batch is recorded (its manifest names the uploads): marked as
            # being written meanwhile, so gc, from any machine, leaves them alone; if this process dies, they
            # are gc's. Once recorded, the batch is pending, which protects them.
            store.start_run(self.spec.slug, batch, "insert", new_batch=True)
            try:
                rows = _upload_local_sources(self, batch, rows)
                store.create_batch(self.spec.slug, batch, [dict(r) for r in rows])
            finally:
                store.end_run(self.spec.slug, batch, "insert")
        else:
            store.create_batch(self.spec.slug, batch, [dict(r) for r in rows])
        instance.add_dynamic_partitions(asset_builder.partitions_name(self.spec), [batch])
        try:
            return self._run_batch(batch, instance, started, log=log, tags=tags, doing="insert into",
                                   code_location=_code_location, submit=_submit)
        except _Aborted as e:  # on_error='abort': the batch never committed; its rows and files go
            lifecycle.delete_batch(self, batch, instance=instance)
            raise e.error from None

    def update(self, value_spec: dict[str, Any], where: Expr | None = None, cascade: bool = True, *,
               instance: dg.DagsterInstance | None = None) -> UpdateStatus:
        """Set inserted columns of the rows `where` selects (every row without it) to constant values, as
        Pixeltable's `t.update({'label': 'cat'}, where=t.id == 3)`; with `cascade` (default) the computed
        columns that read them are computed again for those rows (the others keep their values), and the
        table's views too. `where` must be a filter on stored values (SQL), as in Pixeltable.

        Each batch holding such rows is run again with its new values (its inserted values are what the
        batch recorded: the update changes that record), so it is what a re-run does: files a new value
        no longer needs are deleted, rows computed from unchanged values are kept."""
        from pxt_assets.api.query import _sql  # the query's SQL form of a filter

        self._sync()
        if not isinstance(value_spec, dict):
            raise SpecError(f"update: expected a dict of column name -> value, got {value_spec!r}",
                            error_code=ErrorCode.INVALID_ARGUMENT)
        for name, value in value_spec.items():
            if not isinstance(name, str):
                raise SpecError(f"update: a dict key must be a column name, got {name!r}",
                                error_code=ErrorCode.INVALID_ARGUMENT)
            check_column_name(name, self.path)
            col = self.spec.columns.get(name)
            if col is None:
                raise SpecError(f"update of {self.path!r}: Unknown column: {name}",
                                error_code=ErrorCode.COLUMN_NOT_FOUND)
            if col.is_computed:
                raise SpecError(f"update of {self.path!r}: column {name!r} is computed and cannot be updated",
                                error_code=ErrorCode.UNSUPPORTED_OPERATION)
            if isinstance(value, Expr) or callable(value):
                raise SpecError(f"update of {self.path!r}: column {name!r}: {value!r} is not a recognized literal "
                                "value (expressions as values are not supported)",
                                error_code=ErrorCode.UNSUPPORTED_OPERATION)
            try:
                _check_value(self, col, value)
            except SpecError as e:
                raise SpecError(f"update of {self.path!r}: column {name!r}: value {value!r:.60} is not compatible "
                                f"with its type: {e}", error_code=ErrorCode.TYPE_MISMATCH) from None
        if where is not None and not isinstance(where, Expr):
            raise SpecError("update: the `where` argument must be a valid Pixeltable expression",
                            error_code=ErrorCode.INVALID_EXPRESSION)
        if where is not None:
            self.where(where)  # the query's checks: columns of this table, a predicate
        store = self._rowstore()
        rt = self._row_table()
        node = _sql(where)
        if node is not None and not store.compiles(rt, node):
            raise SpecError(f"update of {self.path!r}: the filter {where!r} is not expressible in SQL (a filter on "
                            "stored values, as Pixeltable requires)", error_code=ErrorCode.UNSUPPORTED_OPERATION)
        if not cascade and launch.is_shared(instance or get_instance()):
            raise SpecError("update(cascade=False) runs in this process: not with a shared Dagster instance",
                            error_code=ErrorCode.UNSUPPORTED_OPERATION)
        started = time.monotonic()
        by_batch: dict[str, list[int]] = {}
        for (rid,) in store.select(rt, [], where=node):
            batch, _, pos = str(rid).rpartition("-")
            by_batch.setdefault(batch, []).append(int(pos))
        dependents = [c.name for c in self.spec.computed_columns() if cascade and _reads_any(self.spec, c, value_spec)]
        if instance is None:
            instance = get_instance()
        excs = 0
        for batch, positions in sorted(by_batch.items()):
            manifest = store.manifest(self.spec.slug, batch) or []
            for pos in positions:
                row = {k: v for k, v in manifest[pos].items() if k != ERRORS_KEY}
                manifest[pos] = {**row, **value_spec}
            store.set_manifest(self.spec.slug, batch, manifest)
            done = self._run_batch(batch, instance, time.monotonic(), doing="update of", only_sources=not cascade,
                                   quiet=True)
            excs += sum(n for c, n in self._error_counts(batch).items() if c in value_spec or c in dependents) \
                if done.num_excs else 0
        rows = sum(len(p) for p in by_batch.values())
        return UpdateStatus(updated_cols=[f"{self.spec.name}.{c}" for c in [*value_spec, *dependents]],
                            row_count_stats=RowCountStats(upd_rows=rows, num_excs=excs,
                                                          computed_values=rows * len(dependents)),
                            batch=max(by_batch) if by_batch else None, batches=tuple(sorted(by_batch)),
                            seconds=time.monotonic() - started)

    def _run_batch(self, batch: str, instance: dg.DagsterInstance, started: float, *, log=None,
                   tags: dict[str, str] | None = None, doing: str,
                   code_location: dict[str, Any] | None = None, submit: bool | None = None,
                   only_sources: bool = False, quiet: bool = False) -> UpdateStatus:
        """Run the batch's job: submitted through the instance (its coordinator, daemon, launcher and
        executor; see pxt_assets.launch) when `submit` (default: on a shared instance), else in this process
        (a notebook on the embedded default: fast, nothing to start)."""
        job_name = asset_builder.batch_job_name(self.spec)
        if submit is None:
            submit = launch.is_shared(instance)
        for attempt in range(_COLUMN_RACE_RUNS):
            seen = (self._table_id, self._version)
            if submit:
                run = launch.submit_and_wait(instance, job_name, batch, tags=tags, target=code_location, log=log)
                success, run_id = run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
                detail = None if success else launch.failure_of(instance, run_id)
            else:
                job = self.definitions().resolve_job_def(job_name)
                if only_sources:  # update(cascade=False): the inserted values, not the columns computed from them
                    job = job.get_subset(asset_selection={asset_builder.asset_key(self.spec, c.name)
                                                          for c in self.spec.source_columns()})
                with console.progress_bars():
                    result = launch.execute_in_process(job, instance=instance, partition_key=batch, tags=tags,
                                                       raise_on_error=False, run_config=console.run_config())
                success, run_id = result.success, result.run_id
                failure = None if success else next((e for e in result.all_events if e.is_step_failure), None)
                detail = _root_message(failure.event_specific_data.error) if failure else "see the run's logs"
            info = self._rowstore().batch_info(self.spec.slug, batch)
            # Another process added or dropped a column while this run computed the table as it was: the
            # commit waits for the new one, or the run failed staging the dropped one. Run again with the
            # table as it is now (what was computed is kept).
            if not (info is not None and info.status != rowstore.COMMITTED and self._persistent):
                break
            self._sync()
            if (self._table_id, self._version) == seen:
                break
        if success and info is not None and info.status != rowstore.COMMITTED:
            detail = info.reason  # the run succeeded without completing the batch (the batch says why)
        detail = redact(detail) if detail else detail
        aborted = aborted_error(info.reason if info is not None else None)
        if aborted is not None:
            raise _Aborted(aborted)
        if not success or info is None or info.status != rowstore.COMMITTED:
            if hasattr(self, "base_spec"):
                raise RuntimeError(
                    f"{doing} {self.path!r} (batch {batch}, run {run_id}) failed: {detail}. The rows of "
                    f"{self.base_spec.display_path!r} are committed; this view's rows for the batch are not "
                    f"visible; fix the cause and run pxt.get_table({self.path!r}).resume({batch!r})")
            raise RuntimeError(
                f"{doing} {self.path!r} (batch {batch}, run {run_id}) failed: {detail}. None of the "
                f"batch's rows are visible; fix the cause and run it again with t.resume({batch!r}) "
                "(nothing is duplicated)")
        excs = self._error_counts(batch)
        outcome = UpdateStatus(
            cols_with_excs=[f"{self.spec.name}.{c}" for c, n in excs.items() if n],
            row_count_stats=RowCountStats(ins_rows=info.num_rows or 0, num_excs=sum(excs.values())),
            batch=batch, run_id=run_id, num_errors=info.num_errors or 0, seconds=time.monotonic() - started,
            batches=(batch,))
        if not quiet:
            (log.info if log is not None else print)(self._describe(outcome))
        if not hasattr(self, "base_spec") and not only_sources:
            # each view makes its rows from the batch's rows, keeping its bad rows (on_error is the table's)
            view_tags = {k: v for k, v in (tags or {}).items() if k != ON_ERROR_TAG} or None
            for view in self._views_to_run():
                done = view._run_batch(batch, instance, time.monotonic(), log=log, tags=view_tags,
                                       doing="computing view", code_location=code_location, submit=submit)
                outcome = outcome + done.to_cascade()
        return outcome

    def _error_counts(self, batch: str) -> dict[str, int]:
        """Column -> how many of the batch's rows have an error in it (Pixeltable's num_excs counts these)."""
        store = self._rowstore()
        return store.error_counts(store.row_table(self.spec.slug), batch, list(self.spec.columns))

    def _describe(self, outcome: UpdateStatus) -> str:
        return outcome.timed_msg()

    def resume(self, batch: str | None = None, *, instance: dg.DagsterInstance | None = None) -> list[InsertResult]:
        """Run again a batch whose insert failed or was killed (or every such batch, oldest first): it
        completes it, and its rows become visible once. Without `batch`, committed batches that lack a
        column added later (its backfill stopped: `uncomputed()`) are run too; what they have is kept.
        Returns what each run did."""
        self._sync()
        self.resolve_destinations()
        if instance is None:
            instance = get_instance()
        todo = [batch] if batch is not None else [*self.pending_batches(), *self.uncomputed()]
        name = asset_builder.partitions_name(self.spec)
        out = []
        for key in todo:
            if self._rowstore().batch_info(self.spec.slug, key) is None:
                raise SpecError(f"table {self.path!r} has no batch {key!r}")
            if not instance.has_dynamic_partition(name, key):
                instance.add_dynamic_partitions(name, [key])  # a batch another instance created
            out.append(self._run_batch(key, instance, time.monotonic(), doing="resuming batch of"))
        return out

    def uncomputed(self) -> dict[str, list[str]]:
        """Committed batches whose rows lack computed columns added after they committed (the column's
        backfill stopped: killed, or failed): batch -> those columns. `resume()` computes them."""
        self._sync()
        store = self._rowstore()
        return store.uncomputed(store.row_table(self.spec.slug), [c.name for c in self.spec.computed_columns()])

    def batches(self) -> list[str]:
        """Batch keys (partitions) of this table, oldest first: committed ones and pending ones."""
        self._sync()
        return self._rowstore().batches(self.spec.slug)

    def batch_info(self, batch: str) -> rowstore.BatchInfo:
        """A batch's state (`created`, `computing`, `committed`, `failed`), its counts, and, when it is not
        committed, why (`.reason`)."""
        info = self._rowstore().batch_info(self.spec.slug, batch)
        if info is None:
            raise SpecError(f"table {self.path!r} has no batch {batch!r}")
        return info

    def pending_batches(self) -> list[str]:
        """Batches inserted but not (yet) committed: running now, or failed or killed (see resume())."""
        self._sync()
        return self._rowstore().batches(self.spec.slug, rowstore.PENDING)

    # -- lifecycle (implemented in pxt_assets.lifecycle) -------------------------------------------------
    def delete(self, *, batch: str, instance: dg.DagsterInstance | None = None) -> int:
        """Delete one batch: its rows, every file the project wrote for them (from the locations recorded
        when they were written), and its partition. Files the user only referenced are kept. Returns the
        number of files deleted."""
        self._sync()
        return lifecycle.delete_batch(self, batch, instance=instance)

    def drop_column(self, name: str, *, instance: dg.DagsterInstance | None = None) -> int:
        """Drop a column (not one other columns read): every file it wrote (in every batch, from the recorded
        locations) and its stored values. For a table declared in code, remove it from the code as well.
        Returns the number of files deleted."""
        if not self._persistent:
            deleted = lifecycle.drop_column(self, name, instance=instance)
            self._pending.pop(name, None)
            return deleted
        self._sync()
        store = self._rowstore()
        rt = store.row_table(self.spec.slug)
        if name not in self.spec.columns:
            if rt is None or name not in rt.column_types:
                raise SpecError(f"table {self.path!r} has no column {name!r}")
            # a drop by an earlier release that stopped midway: its rows still hold the column
            return lifecycle.drop_column_data(self, name, instance=instance, catalog_path=self.path)
        # The files it wrote, listed first; then the column leaves the catalog and the row table in one
        # transaction (a process killed at any point leaves the two agreeing); then the files are deleted.
        # Files written for it after the listing, or left by a kill before their deletion, are named by no
        # row: gc's.
        files = store.owned_files(rt, self.spec.slug, column=name) if rt is not None else []
        code_views = self.__dict__.get("_views", {}).values()
        if not self._remove_from_catalog(name, lambda spec: lifecycle.check_column_drop(
                spec, name, store, is_view=hasattr(self, "base_spec"), code_views=code_views)):
            return 0  # another process dropped it meanwhile (and deleted its files)
        return lifecycle.drop_column_files(self, name, files, instance=instance)

    # -- queries --------------------------------------------------------------------------------------
    def _query(self) -> Query:
        return Query(self)

    def count(self) -> int:
        """Number of rows in the table (committed batches only)."""
        return self._query().count()

    def select(self, *exprs: Expr, **named: Expr) -> Query:
        """A query returning these expressions: `t.select(t.img.fileurl, w=t.width).collect()`."""
        return self._query().select(*exprs, **named)

    def where(self, predicate: Expr) -> Query:
        """A query keeping the rows where `predicate` holds: `t.where(t.width > 500).collect()`."""
        return self._query().where(predicate)

    def order_by(self, *exprs: Expr, asc: bool = True) -> Query:
        return self._query().order_by(*exprs, asc=asc)

    def limit(self, n: int, offset: int | None = None) -> Query:
        """At most `n` rows, after skipping `offset`: `t.limit(10, offset=20).collect()`."""
        return self._query().limit(n, offset=offset)

    def head(self, n: int = 10) -> ResultSet:
        """The first `n` rows in insertion order."""
        return self._query().head(n)

    def tail(self, n: int = 10) -> ResultSet:
        """The last `n` rows in insertion order."""
        return self._query().tail(n)

    def show(self, n: int = 20) -> ResultSet:
        """The first `n` rows (20 by default), as Pixeltable's `t.show()`."""
        return self._query().show(n)

    def collect(self) -> ResultSet:
        """The whole table as a ResultSet (media columns as PIL images, plus an `errors` column);
        `.to_pandas()` for a DataFrame."""
        return self._query().collect()


class _Aborted(Exception):
    """A batch run with on_error='abort' stopped at a row's error (`error`: the pxt.Error to raise)."""

    def __init__(self, error: Error) -> None:
        super().__init__(str(error))
        self.error = error


def _check_row(table: MediaTable, i: int, row: dict[str, Any], *, check_types: bool) -> None:
    """Refuse a row before anything is recorded, as Pixeltable validates one: a non-nullable column without a
    value (always); with `check_types` (on_error='abort'), a value of the wrong type for its column. Each
    error names the column and the value."""
    for col in table.spec.source_columns():
        value = row.get(col.name)
        if not col.col_type.nullable:
            if col.name not in row:
                raise SpecError(f"insert into {table.path!r}: row {i}: Missing value for non-nullable column "
                                f"{col.name!r} ({col.col_type!r})", error_code=ErrorCode.MISSING_REQUIRED)
            if value is None:
                raise SpecError(f"insert into {table.path!r}: row {i}: column {col.name!r}: expected non-None "
                                f"value ({col.col_type!r})", error_code=ErrorCode.UNSUPPORTED_OPERATION)
        if check_types and value is not None:
            try:
                _check_value(table, col, value)
            except SpecError as e:
                raise SpecError(f"insert into {table.path!r}: row {i}: column {col.name!r}: {e}",
                                error_code=ErrorCode.UNSUPPORTED_OPERATION) from None


def _reads_any(spec: TableSpec, col: ColumnSpec, names: Any) -> bool:
    """Whether computed column `col` reads any of `names`, directly or through other computed columns."""
    seen = set(names)
    for c in spec.computed_columns():  # definition order: a column reads earlier ones only
        if c.expr.columns() & seen:
            seen.add(c.name)
    return col.name in seen


def _check_value(table: MediaTable, col: ColumnSpec, value: Any) -> None:
    """A SpecError saying what `col` expected if `value` is not one of its values."""
    if value is None:
        if not col.col_type.nullable:
            raise SpecError(f"expected non-None value ({col.col_type!r})", error_code=ErrorCode.UNSUPPORTED_OPERATION)
        return
    try:
        if col.is_media:
            if not isinstance(value, (str, pathlib.Path)):
                raise ValueError(f"expected a path or URL for {col.col_type!r}, got {type(value).__name__} "
                                 f"{value!r:.60}")
        else:
            check_scalar(col, value)
            if (why := value_problem(col.col_type.name, value)) is not None:
                raise ValueError(f"not a valid Pixeltable JSON object: {why}" if col.col_type.name == "Json"
                                 else why)
    except Exception as e:  # noqa: BLE001 - RowError or ValueError: the message says what was expected
        raise SpecError(str(e), error_code=ErrorCode.UNSUPPORTED_OPERATION) from None


def _schema_type(name: str, t: Any) -> ColumnType:
    """A schema's type form (`pxt.Int`, `pxt.Int | None`, `Optional[pxt.Int]`, `pxt.Required[pxt.Int]`) as a
    ColumnType; anything else a SpecError naming the column."""
    try:
        return column_type(t, f"Column {name!r}")
    except RequestError as e:
        raise SpecError(e.message, error_code=e.error_code) from None


def _canonical(entry: dict[str, Any]) -> str:
    """A column's catalog entry as one string, the same for the entry written and the entry read back."""
    return json.dumps(entry, sort_keys=True, default=str)


def _shown_destination(column: ColumnSpec) -> str:
    if column.destination_source == PENDING:  # not resolved yet: what was declared
        return column.destination_arg or "the configured default"
    return column.destination or "referenced in place"


def _refuse_local_destination_when_shared(table: MediaTable, name: str, destination: str | None) -> None:
    """In a shared deployment a computed file must land where every worker (and reader) finds it."""
    settings = table.settings
    chosen = destination or settings.output_media_dest
    if chosen is not None and stores.store_for(str(chosen)).remote:
        return
    if not launch.shared_deployment(settings):
        return
    raise SpecError(f"Column {name!r}: in a shared deployment (db_url and a shared Dagster instance) its files "
                    f"would land on one worker's disk ({chosen or 'the default $PIXELTABLE_HOME/media'}); give a "
                    "bucket destination= or set output_media_dest to a bucket")


def _upload_local_sources(table: MediaTable, batch: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In a shared deployment, local files inserted into media columns are uploaded now, from the machine that
    has them, to the column's input_media_dest (a bucket), under the names the insert step would give them;
    without a bucket destination they are refused: a worker elsewhere could not read them."""
    media_io = MediaIOManager()
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        for col in table.spec.source_columns():
            value = row.get(col.name)
            if not col.is_media or value is None:
                continue
            uri = stores.normalize_uri(str(value))
            local = stores.store_for(uri).local_path(uri)
            if local is None:
                continue  # a URL: every machine can read it
            if col.destination is None or not stores.store_for(col.destination).remote:
                raise SpecError(
                    f"insert into {table.path!r}: column {col.name!r} gets the local file {local}, which workers "
                    "on other machines cannot read; set input_media_dest to a bucket (the file is then uploaded "
                    "now) or insert a URL")
            if not local.is_file():
                continue  # the insert step records the row's error (file not found)
            row[col.name] = media_io.writer_for(table.spec, col).copy_file(row_id(batch, i), local, suffix_of(uri))
        out.append(row)
    return out


def _root_message(error: Any) -> str:
    """The innermost cause of a Dagster step error: the user's exception, not Dagster's wrapper."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error.message.strip()





def _check_queue(prefix: str, queue: str | None, reconcile_every: float | None, cron_schedule: str | None) -> None:
    """A watch's notification queue: an SQS queue URL, for an s3:// prefix, with a sensor (not a schedule)."""
    if queue is None:
        if reconcile_every is not None:
            raise SpecError("watch: reconcile_every= goes with queue= (a watch without a queue lists every tick)")
        return
    if not isinstance(queue, str) or not queue.startswith(("https://", "http://")):
        raise SpecError(f"watch: queue= takes an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/"
                        f"<name>), got {redact(repr(queue))}")
    if not prefix.startswith("s3://"):
        raise SpecError(f"watch: queue= is for s3:// prefixes (Amazon S3 bucket notifications), got {redact(prefix)}; "
                        "R2, B2 and Tigris deliver events through their own services: watch them by listing")
    if cron_schedule is not None:
        raise SpecError("watch: queue= makes a sensor; leave out cron_schedule=")
    if reconcile_every is not None and not reconcile_every > 0:
        raise SpecError(f"watch: reconcile_every= is a number of seconds > 0, got {reconcile_every!r}")
