"""What users call: define a media table, add computed columns, insert batches, read it back."""


import re
import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from pxt_assets import assets as asset_builder
from pxt_assets import stores
from pxt_assets.config import Settings, load_settings
from pxt_assets.evaluate import Row, is_missing
from pxt_assets.io_managers import MediaIOManager, TableIOManager, destinations
from pxt_assets.io_managers.table_store import TableStore, new_batch_key
from pxt_assets.media import ColumnType
from pxt_assets.spec import ColumnRef, ColumnSpec, Expr, Prop, SpecError, TableSpec, check_column_name, parse_table_path


@dataclass(frozen=True)
class InsertResult:
    """What an insert did: its batch (partition key), row and error counts, the Dagster run."""

    batch: str
    num_rows: int
    num_errors: int
    run_id: str
    seconds: float

    def __str__(self) -> str:
        rate = self.num_rows / self.seconds if self.seconds > 0 else float("inf")
        noun = "row" if self.num_rows == 1 else "rows"
        return f"Inserted {self.num_rows} {noun} with {self.num_errors} errors in {self.seconds:.2f} s ({rate:.2f} rows/s)"


class MediaTable:
    """A table of media and computed columns, materialized as Dagster assets.

    >>> media = MediaTable("blob_storage_demo/media", {"source_image": Image})
    >>> media.add_computed_column(rotated=media.source_image.rotate(90), destination="/data/rotated")
    """

    def __init__(self, path: str, schema: dict[str, ColumnType], *, settings: Settings | None = None,
                 automation: bool = True) -> None:
        """`automation`: computed columns follow each new batch of their sources automatically (Dagster
        declarative automation, evaluated by a running automation sensor)."""
        self._settings = settings
        self.automation = automation
        self._watch = None
        self._persistent = False  # a catalog table: every change is saved for other processes
        self.spec = TableSpec(parse_table_path(path))
        if not schema:
            raise SpecError(f"table {path!r}: the schema needs at least one column")
        for name, col_type in schema.items():
            self.add_column(**{name: col_type})
        self._defs: dg.Definitions | None = None

    # -- schema ---------------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self._settings or load_settings()

    @property
    def path(self) -> str:
        return self.spec.display_path

    def add_column(self, *, destination: str | None = None, **column: ColumnType) -> None:
        """Add a source (inserted) column. Its media go to input_media_dest if set, else stay in place;
        `destination=` is refused here, as in Pixeltable: it applies only to computed columns."""
        if len(column) != 1:
            raise SpecError("add_column takes exactly one name=type argument")
        (name, col_type), = column.items()
        self._check_new(name)
        if not isinstance(col_type, ColumnType):
            raise SpecError(f"Column {name!r}: expected a type such as pxt.Image, got {col_type!r}")
        resolved = destinations.resolve(name, computed=False, is_media=col_type.is_media, explicit=destination,
                                        settings=self.settings)
        self.spec.columns[name] = ColumnSpec(name, col_type, None, destination, resolved.uri, resolved.rule)
        self._defs = None
        if getattr(self, "_persistent", False):
            self._save()

    def add_computed_column(self, *, destination: str | None = None, if_exists: str = "error",
                            instance: dg.DagsterInstance | None = None, **column: Expr) -> None:
        """Add a column computed from others, e.g. `rotated=t.source_image.rotate(90)`.

        `destination` (media columns only) wins over output_media_dest and the default
        `$PIXELTABLE_HOME/media`; it is validated now (a missing local folder is an error naming the column).
        """
        if len(column) != 1:
            raise SpecError("add_computed_column takes exactly one name=expression argument")
        (name, expr), = column.items()
        if if_exists not in ("error", "ignore", "replace"):
            raise SpecError(f"if_exists must be 'error', 'ignore' or 'replace', got {if_exists!r}")
        if name in self.spec.columns:
            if if_exists == "ignore":
                return
            if if_exists == "error":
                raise SpecError(f"table {self.path!r} already has a column {name!r}")
            if self._persistent and self.batches():
                self.drop_column(name, instance=instance)  # its files and values go with it
            else:
                self.spec.columns.pop(name)
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
        resolved = destinations.resolve(name, computed=True, is_media=col_type.is_media, explicit=destination,
                                        settings=self.settings)
        self.spec.columns[name] = ColumnSpec(name, col_type, expr, destination, resolved.uri, resolved.rule)
        self._defs = None
        if self._persistent:
            self._save()
            if self.batches():
                self._backfill(name, instance)

    def watch(self, prefix: str, *, minimum_interval_seconds: int = 30, max_batch_rows: int = 1000,
              max_batches_per_tick: int = 10, column: str | None = None, cron_schedule: str | None = None,
              suffixes: tuple[str, ...] | None = None, lookback_seconds: float = 300.0) -> None:
        """Watch `prefix` (s3://, gs://, Azure, R2/B2/Tigris, or a local folder) for new objects.

        `pxt.definitions(t)` then contains a sensor `<dir>__<name>_sensor` (running by default): each tick
        turns unseen objects into new batches of at most `max_batch_rows` rows, inserted into `column`
        (default: the first media column) and materialized. With `cron_schedule`, a schedule
        `<dir>__<name>_schedule` does the same on a fixed cadence instead. `suffixes` limits the objects
        taken (default for Image columns: common image extensions).
        """
        from pxt_assets.watch import IMAGE_SUFFIXES, WatchSpec

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
        if suffixes is None and self.spec.columns[name].col_type.name == "Image":
            suffixes = IMAGE_SUFFIXES
        self._watch = WatchSpec(prefix, name, minimum_interval_seconds, max_batch_rows, max_batches_per_tick,
                                lookback_seconds, cron_schedule, tuple(suffixes) if suffixes else None)
        self._defs = None
        self._save()

    # -- catalog ----------------------------------------------------------------------------------------
    def _doc(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "automation": self.automation,
                "watch": self._watch.to_dict() if self._watch is not None else None}

    def _save(self) -> None:
        if self._persistent:
            from pxt_assets import catalog

            catalog.save(self._doc())

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> "MediaTable":
        """A catalog table as recorded: destinations are not resolved again (the config may have changed)."""
        from pxt_assets.watch import WatchSpec

        table = cls.__new__(cls)
        table._settings = None
        table.automation = bool(doc.get("automation", True))
        table.spec = TableSpec.from_dict(doc)
        w = doc.get("watch")
        table._watch = WatchSpec(**{**w, "suffixes": tuple(w["suffixes"]) if w.get("suffixes") else None}) if w else None
        table._defs = None
        table._persistent = True
        return table

    def _backfill(self, column: str, instance: dg.DagsterInstance | None) -> None:
        """Compute `column` for every existing batch (what Pixeltable does before add_computed_column returns)."""
        if instance is None:
            from pxt_assets.instance import get_instance

            instance = get_instance()
        started = time.monotonic()
        key = asset_builder.asset_key(self.spec, column)
        job = self.definitions().resolve_job_def(asset_builder.batch_job_name(self.spec)).get_subset(
            asset_selection={key})
        rows = errors = 0
        for batch in self.batches():
            if self.table_store().read_column(self.spec, self.spec.source_columns()[0].name, batch) is None:
                continue  # a batch that never materialized has no rows to compute
            result = job.execute_in_process(instance=instance, partition_key=batch, raise_on_error=False)
            if not result.success:
                failure = next((e for e in result.all_events if e.is_step_failure), None)
                detail = _root_message(failure.event_specific_data.error) if failure else "see the run's logs"
                raise RuntimeError(f"computing {self.path}.{column} for batch {batch} failed: {detail}")
            frame = self.table_store().read_column(self.spec, column, batch)
            rows += len(frame)
            errors += int(frame["error"].notna().sum())
        seconds = time.monotonic() - started
        noun = "value" if rows == 1 else "values"
        print(f"Added {rows} column {noun} with {errors} errors in {seconds:.2f} s ({rows / max(seconds, 1e-9):.2f} rows/s)")

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(repr(c.col_type))}</td>"
            f"<td>{html.escape(repr(c.expr)) if c.expr is not None else ''}</td>"
            f"<td>{html.escape(c.destination or ('referenced in place' if c.is_media else ''))}</td></tr>"
            for c in self.spec.columns.values()
        )
        return (f"<b>table {html.escape(self.path)!r}</b><table><tr><th>Column</th><th>Type</th>"
                f"<th>Computed with</th><th>Destination</th></tr>{rows}</table>")

    def _check_new(self, name: str) -> None:
        check_column_name(name)
        if name in self.spec.columns:
            raise SpecError(f"table {self.path!r} already has a column {name!r}")

    def __getattr__(self, name: str) -> ColumnRef:
        if name.startswith("_") or name == "spec":
            raise AttributeError(name)
        columns = self.__dict__.get("spec").columns if "spec" in self.__dict__ else {}
        if name in columns:
            return ColumnRef(name, columns[name].col_type)
        raise AttributeError(f"table {self.__dict__['spec'].display_path!r} has no column {name!r}")

    def __getitem__(self, name: str) -> ColumnRef:
        return self.__getattr__(name)

    def __repr__(self) -> str:
        lines = [f"MediaTable {self.path!r}"]
        for c in self.spec.columns.values():
            what = f"= {c.expr!r}" if c.expr is not None else "(inserted)"
            where = f"  -> {c.destination or 'referenced in place'} [{c.destination_source}]" if c.is_media else ""
            lines.append(f"  {c.name}: {c.col_type!r} {what}{where}")
        return "\n".join(lines)

    # -- Dagster ----------------------------------------------------------------------------------------
    def assets_definitions(self) -> list[dg.AssetsDefinition]:
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
        """This table alone as Definitions (cached until the schema changes)."""
        if self._defs is None:
            self._defs = definitions(self)
        return self._defs

    def table_store(self) -> TableStore:
        return TableStore(self.settings.tables_dir)

    # -- data -------------------------------------------------------------------------------------------
    def insert(self, rows: list[dict[str, Any]] | None = None, /, *, instance: dg.DagsterInstance | None = None,
               log=None, tags: dict[str, str] | None = None, **values: Any) -> InsertResult:
        """Insert rows as one new batch and materialize every column for it on the Dagster instance.

        `rows` is a list of {column: value}; or pass one row as keywords (`t.insert(source_image=path)`).
        Media values are local paths, file:// or http(s):// URLs. A bad row (missing file, corrupt image)
        is kept with its error and counted; it does not fail the batch.
        """
        if rows is not None and values:
            raise TypeError("insert() takes a list of rows or one row as keywords, not both")
        rows = list(rows) if rows is not None else [values]
        if not rows:
            raise ValueError(f"insert into {self.path!r}: no rows given")
        sources = {c.name for c in self.spec.source_columns()}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise TypeError(f"insert into {self.path!r}: row {i} is not a dict: {row!r}")
            unknown = set(row) - sources
            if unknown:
                raise SpecError(f"insert into {self.path!r}: row {i} has unknown column(s) {sorted(unknown)}; "
                                f"insertable columns: {sorted(sources)}")
        if instance is None:
            from pxt_assets.instance import get_instance

            instance = get_instance()
        started = time.monotonic()
        batch = new_batch_key()
        # The manifest is written before the partition exists, so a run never sees a batch without rows.
        self.table_store().write_manifest(self.spec, batch, [dict(r) for r in rows])
        instance.add_dynamic_partitions(asset_builder.partitions_name(self.spec), [batch])
        job = self.definitions().resolve_job_def(asset_builder.batch_job_name(self.spec))
        result = job.execute_in_process(instance=instance, partition_key=batch, tags=tags, raise_on_error=False)
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            detail = _root_message(failure.event_specific_data.error) if failure else "see the run's logs"
            raise RuntimeError(f"insert into {self.path!r} (batch {batch}, run {result.run_id}) failed: {detail}")
        frame = self._read_batch(batch)
        errors = int(frame["_errors"].notna().sum()) if len(frame) else 0
        outcome = InsertResult(batch, len(frame), errors, result.run_id, time.monotonic() - started)
        (log.info if log is not None else print)(str(outcome))
        return outcome

    def batches(self) -> list[str]:
        """Batch keys (partitions) of this table, oldest first."""
        return self.table_store().batches(self.spec)

    # -- lifecycle (implemented in pxt_assets.lifecycle) -------------------------------------------------
    def delete(self, *, batch: str, instance: dg.DagsterInstance | None = None) -> int:
        """Delete one batch: its rows, every file the project wrote for them (from the locations recorded
        when they were written), and its partition. Files the user only referenced are kept. Returns the
        number of files deleted."""
        from pxt_assets import lifecycle

        return lifecycle.delete_batch(self, batch, instance=instance)

    def drop_column(self, name: str, *, instance: dg.DagsterInstance | None = None) -> int:
        """Drop a column (not one other columns read): every file it wrote (in every batch, from the recorded
        locations) and its stored values. For a table declared in code, remove it from the code as well.
        Returns the number of files deleted."""
        from pxt_assets import lifecycle

        deleted = lifecycle.drop_column(self, name, instance=instance)
        self._save()
        return deleted

    def _read_batch(self, batch: str) -> pd.DataFrame:
        store = self.table_store()
        merged: pd.DataFrame | None = None
        for col in self.spec.columns.values():
            frame = store.read_column(self.spec, col.name, batch)
            if frame is None:
                continue
            part = frame[["row_id", "value", "error", "errortype"]].rename(
                columns={"value": col.name, "error": f"_err_{col.name}", "errortype": f"_errtype_{col.name}"}
            )
            merged = part if merged is None else merged.merge(part, on="row_id", how="left")
        if merged is None:
            return pd.DataFrame(columns=["row_id", "_errors"])
        err_cols = [f"_err_{c}" for c in self.spec.columns if f"_err_{c}" in merged]
        merged["_errors"] = merged[err_cols].apply(
            lambda r: "; ".join(f"{c[5:]}: {v}" for c, v in r.items() if isinstance(v, str)) or None, axis=1
        )
        return merged

    def _stored(self) -> pd.DataFrame:
        """All materialized rows: one column per table column (stored values: URIs for media), errors."""
        frames = [self._read_batch(b) for b in self.batches()]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=["row_id", *self.spec.columns, "_errors"])
        return pd.concat(frames, ignore_index=True)

    def count(self) -> int:
        """Number of rows materialized in the table."""
        return len(self._stored())

    def select(self, *exprs: Expr, **named: Expr) -> "Query":
        """A query over this table; `.collect()` runs it. With no arguments, every column."""
        return Query(self, exprs, named)

    def collect(self) -> pd.DataFrame:
        """The whole table as a DataFrame (media columns as PIL images, plus an `errors` column)."""
        return self.select().collect()


class ResultSet(pd.DataFrame):
    """A query result: a pandas DataFrame that shows media as small inline previews in Jupyter."""

    _PREVIEW_PX = 96

    @property
    def _constructor(self):
        return ResultSet

    def _repr_html_(self) -> str:  # type: ignore[override]
        import base64
        import html
        import io

        import PIL.Image

        def cell(v: Any) -> str:
            if isinstance(v, PIL.Image.Image):
                img = v.copy()
                img.thumbnail((self._PREVIEW_PX, self._PREVIEW_PX))
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="JPEG", quality=80)
                return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'
            return html.escape("" if v is None else str(v))

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                       for row in self.itertuples(index=False))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _name_for(expr: Expr) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", repr(expr)).strip("_") or "col"


class Query:
    """`t.select(...)`: expressions evaluated per row over the stored table."""

    def __init__(self, table: MediaTable, exprs: tuple[Expr, ...], named: dict[str, Expr]) -> None:
        self.table = table
        items: list[tuple[str, Expr]] = []
        if not exprs and not named:
            items = [(c, ColumnRef(c, table.spec.columns[c].col_type)) for c in table.spec.columns]
        for e in exprs:
            name, n = _name_for(e), 2
            while any(name == k for k, _ in items) or name in named:
                name, n = f"{_name_for(e)}_{n}", n + 1
            items.append((name, e))
        items.extend(named.items())
        for name, e in items:
            if not isinstance(e, Expr):
                raise SpecError(f"select: {name!r} is not an expression: {e!r}")
            unknown = e.columns() - set(table.spec.columns)
            if unknown:
                raise SpecError(f"select: {name!r} reads unknown column(s) {sorted(unknown)} of {table.path!r}")
        self.items = items
        self.with_errors = not exprs and not named

    def collect(self) -> pd.DataFrame:
        """Run the query: one row per table row, in insertion order."""
        stored = self.table._stored()
        media_io = MediaIOManager()
        reader = media_io.reader()
        spec = self.table.spec
        out: dict[str, list[Any]] = {name: [] for name, _ in self.items}
        for rec in stored.to_dict("records"):
            values = {c: (None if is_missing(rec.get(c)) else rec.get(c)) for c in spec.columns}
            errors = {c: rec[f"_err_{c}"] for c in spec.columns if isinstance(rec.get(f"_err_{c}"), str)}
            errortypes = {c: rec[f"_errtype_{c}"] for c in errors}
            row = Row(spec, reader, rec["row_id"], values, errors, errortypes)
            for name, e in self.items:
                try:
                    out[name].append(row.evaluate(e))
                except Exception:  # noqa: BLE001 - an unreadable value shows as None, its error in `errors`
                    out[name].append(None)
        frame = ResultSet(out)
        for name, e in self.items:
            if e.col_type is not None and e.col_type.name == "Int":
                frame[name] = frame[name].astype("Int64")  # nullable: a row in error stays an integer column
        if self.with_errors:
            frame["errors"] = list(stored["_errors"]) if len(stored) else []
        return frame


def _root_message(error: Any) -> str:
    """The innermost cause of a Dagster step error: the user's exception, not Dagster's wrapper."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error.message.strip()



def definitions(*tables: MediaTable, resources: dict[str, Any] | None = None) -> dg.Definitions:
    """Dagster Definitions for `tables`: their assets, a batch job and an insert job each, the IO managers."""
    from pxt_assets import watch as watching

    all_assets: list[dg.AssetsDefinition] = []
    jobs: list[Any] = []
    sensors: list[dg.SensorDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    seen: set[str] = set()
    for table in tables:
        if table.spec.slug in seen:
            raise SpecError(f"table {table.path!r} is declared twice")
        seen.add(table.spec.slug)
        table_assets = table.assets_definitions()
        all_assets.extend(table_assets)
        batch_job = asset_builder.batch_job_name(table.spec)
        jobs.append(dg.define_asset_job(
            batch_job,
            selection=dg.AssetSelection.assets(*table_assets),
            partitions_def=table.partitions_def,
            description=f"Materialize one batch (partition) of table {table.path!r}: every column.",
        ))
        jobs.append(_insert_job(table))
        w = table._watch
        if w is not None:
            build = watching.build_schedule if w.cron_schedule else watching.build_sensor
            target = schedules if w.cron_schedule else sensors
            target.append(build(table.spec, w, batch_job, table.partitions_def, table.table_store))
    if any(t.automation and t.spec.computed_columns() for t in tables):
        # Dagster's default automation sensor starts stopped; this one runs, so columns follow new batches.
        sensors.append(dg.AutomationConditionSensorDefinition(
            "pxt_assets_automation_sensor", target=dg.AssetSelection.all(),
            default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=10,
        ))
    return dg.Definitions(
        assets=all_assets,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        resources={asset_builder.TABLE_IO: TableIOManager(), asset_builder.MEDIA_IO: MediaIOManager(),
                   **(resources or {})},
    )


# -- the catalog: Pixeltable's module-level calls ------------------------------------------------------------


def create_dir(path: str, *, if_exists: str = "error", parents: bool = False) -> None:
    """Create a directory for tables (`pxt.create_dir('blob_storage_demo')`)."""
    from pxt_assets import catalog

    if catalog.create_dir(path, if_exists=if_exists, parents=parents):
        print(f"Created directory {parse_table_path(path)[-1]!r}.")


def create_table(path: str, schema: dict[str, ColumnType], *, if_exists: str = "error",
                 instance: dg.DagsterInstance | None = None) -> MediaTable:
    """Create a table in the persistent catalog; every process (and `dagster dev`) sees it.

    if_exists: 'error' (default), 'ignore' (return the existing table) or 'replace' (drop it, files and
    all, then create it anew).
    """
    from pxt_assets import catalog

    if if_exists not in ("error", "ignore", "replace"):
        raise SpecError(f"if_exists must be 'error', 'ignore' or 'replace', got {if_exists!r}")
    parts = parse_table_path(path)
    if catalog.table_exists(parts):
        if if_exists == "error":
            raise SpecError(f"table {path!r} already exists")
        if if_exists == "ignore":
            return get_table(path)
        drop_table(path, instance=instance)
    if not catalog.dir_exists(parts[:-1]):
        raise SpecError(f"directory {'/'.join(parts[:-1])!r} does not exist; create it with pxt.create_dir")
    table = MediaTable(path, schema)
    table._persistent = True
    table._save()
    print(f"Created table {parts[-1]!r}.")
    return table


def get_table(path: str) -> MediaTable:
    """A table of the catalog, as recorded (with the destinations resolved when its columns were added)."""
    from pxt_assets import catalog

    doc = catalog.load(path)
    if doc is None:
        raise SpecError(f"table {path!r} does not exist")
    return MediaTable._from_doc(doc)


def list_tables(dir_path: str = "", recursive: bool = True) -> list[str]:
    """Paths of the catalog's tables (under `dir_path`)."""
    from pxt_assets import catalog

    return catalog.list_tables(dir_path, recursive=recursive)


def drop_table(path: str, *, if_not_exists: str = "error", force: bool = False,
               instance: dg.DagsterInstance | None = None) -> int:
    """Drop a table: every file it wrote (from the recorded locations), its rows, partitions and catalog
    entry. Files a user only referenced are kept. Returns the number of files deleted."""
    from pxt_assets import catalog, lifecycle

    parts = parse_table_path(path)
    in_catalog = catalog.table_exists(parts)
    deleted = lifecycle.drop_table(path, if_not_exists="ignore" if in_catalog else if_not_exists,
                                   instance=instance)
    catalog.remove_table(path)
    return deleted


def drop_dir(path: str, *, force: bool = False, if_not_exists: str = "error",
             instance: dg.DagsterInstance | None = None) -> None:
    """Drop a directory. With force=True its tables are dropped too (files and all), and a missing
    directory is not an error (the seeds' clean slate)."""
    from pxt_assets import catalog

    parts = parse_table_path(path)
    if not catalog.dir_exists(parts):
        if force or if_not_exists == "ignore":
            return
        raise SpecError(f"directory {path!r} does not exist")
    tables = catalog.list_tables(path)
    if tables and not force:
        raise SpecError(f"directory {path!r} is not empty ({len(tables)} tables); use force=True")
    for t in tables:
        drop_table(t, instance=instance)
    catalog.remove_dir(path)


def catalog_tables() -> tuple[list[MediaTable], list[tuple[str, str]]]:
    """Every catalog table, and (file, error) for those that could not be read."""
    from pxt_assets import catalog

    docs, errors = catalog.load_all()
    return [MediaTable._from_doc(d) for d in docs], errors


def merge_tables(code: list[MediaTable], catalog_tables: list[MediaTable]) -> list[MediaTable]:
    """Tables declared in code and in the catalog, side by side. The same path in both must have the same
    columns (the code one is used); otherwise it is an error naming the path and both column lists."""
    by_path = {t.spec.path: t for t in code}
    out = list(code)
    for t in catalog_tables:
        other = by_path.get(t.spec.path)
        if other is None:
            out.append(t)
            continue
        mine = [(c.name, c.col_type.name, c.expr.to_dict() if c.expr else None) for c in other.spec.columns.values()]
        theirs = [(c.name, c.col_type.name, c.expr.to_dict() if c.expr else None) for c in t.spec.columns.values()]
        if mine != theirs:
            raise SpecError(
                f"table {t.path!r} is declared twice with different columns: in code {[m[0] for m in mine]}, "
                f"in the catalog {[x[0] for x in theirs]}; drop one (pxt.drop_table) or make them agree"
            )
    return out


class InsertConfig(dg.Config):
    """Run config of a table's insert job: `files` (paths or URLs for the table's first media column),
    and/or `rows` (full rows as {column: value})."""

    files: list[str] = []
    rows: list[dict[str, Any]] = []


def _insert_job(table: MediaTable) -> dg.JobDefinition:
    media_cols = [c.name for c in table.spec.source_columns() if c.is_media]

    @dg.op(name=f"{table.spec.slug}__insert", description=f"Insert a batch into {table.path!r} and materialize it.")
    def insert_op(context: dg.OpExecutionContext, config: InsertConfig) -> dg.Output[str]:
        rows: list[dict[str, Any]] = [dict(r) for r in config.rows]
        if config.files:
            if not media_cols:
                raise dg.Failure(f"table {table.path!r} has no media column to insert `files` into; use `rows`")
            rows.extend({media_cols[0]: f} for f in config.files)
        if not rows:
            raise dg.Failure(f"nothing to insert into {table.path!r}: give `files` or `rows` in the run config")
        result = table.insert(rows, instance=context.instance, log=context.log,
                              tags={"pxt/parent_run_id": context.run_id})
        context.log.info(f"{result.num_rows} rows inserted with {result.num_errors} errors")
        return dg.Output(result.batch, metadata={"batch": result.batch, "rows": result.num_rows,
                                                 "errors": result.num_errors, "run_id": result.run_id})

    @dg.job(name=asset_builder.insert_job_name(table.spec),
            description=f"Insert the files or rows in the run config into {table.path!r} as a new batch, "
                        "then materialize every column for that batch.")
    def insert_job() -> None:
        insert_op()

    return insert_job
