"""Building Dagster assets, jobs and partitions from a table spec.

Per table `dir/name` (slug `dir__name`):
- partitions `dir__name__batches`: one dynamic partition per ingest batch (an insert, a sensor tick);
- `dir__name__source`: a multi-asset with one asset per source column; it reads the batch's manifest from
  the database and stores each inserted value (media referenced in place, copied or uploaded: the IO layer
  decides, see io_managers/ingest.py);
- `dir__name__computed`: a multi-asset with one asset per computed column, each with lineage edges to the
  columns its expression reads; columns are computed in one pass per row, so a source is fetched and
  decoded once however many columns read it; it can be subset (one column, e.g. a backfill);
- job `dir__name__batch_job`: materializes one batch partition of the table;
- job `dir__name_job`: inserts a batch from run config (files or URLs) and materializes it.

Each step stages its columns' records through the IO manager; the last step of a run that writes the batch
commits it, so the batch's rows appear in one transaction after every file they name is written.
"""


import concurrent.futures
import contextlib
import gc
import hashlib
import json
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import PIL.Image

from pxt_assets import console, memory, stores
from pxt_assets.stores import StoreError
from pxt_assets.evaluate import (Row, RowError, as_json, close_frame_cursors, deferred_calls, error_kind, is_missing,
                                 make_calls, want_frames)
from pxt_assets.io_managers import META_COLUMN, META_DESTINATION, META_TABLE, MediaIOManager
from pxt_assets.io_managers.ingest import check_image, ingest_value
from pxt_assets.io_managers.rows import count_errors, new_record, row_id
from pxt_assets.media import suffix_of
from pxt_assets.redaction import redact, redact_metadata, scrubbing
from pxt_assets.spec import ColumnSpec, TableSpec

TABLE_IO = "pxt_table_io"
MEDIA_IO = "pxt_media_io"

# Rows wait on storage most of the time (downloads, uploads): more threads than cores keep both busy.
_WORKERS = max(8, min(16, (os.cpu_count() or 2) * 4))
_PROGRESS_EVERY_S = 5.0


def partitions_name(spec: TableSpec) -> str:
    return f"{spec.slug}__batches"


def batch_job_name(spec: TableSpec) -> str:
    return f"{spec.slug}__batch_job"


def insert_job_name(spec: TableSpec) -> str:
    return f"{spec.slug}_job"


def asset_key(spec: TableSpec, column: str) -> dg.AssetKey:
    return dg.AssetKey([*spec.path, column])


def _out(spec: TableSpec, col: ColumnSpec, pdef, required: bool, automation: bool = False) -> dg.AssetOut:
    shown: dict[str, Any] = {}
    if col.writes_files:
        shown[META_DESTINATION] = col.destination or "referenced in place"
    if col.expr is not None:
        shown["expression"] = repr(col.expr)
    # the table's spec is read back by the IO managers as it is; what is shown is redacted
    metadata: dict[str, Any] = {META_TABLE: spec.to_dict(), META_COLUMN: col.name, **redact_metadata(shown)}
    kinds = {"pxt", col.col_type.name.lower()}
    if col.destination:
        kinds.add(stores.store_for(col.destination).provider)
    return dg.AssetOut(
        key=asset_key(spec, col.name),
        io_manager_key=MEDIA_IO if col.is_media else TABLE_IO,
        is_required=required,
        group_name=spec.slug,
        metadata=metadata,
        kinds=kinds,
        code_version=col.expr.code_version() if col.expr is not None else "source",
        # eager: a new batch's columns follow its source; a column added later is not backfilled on its own
        automation_condition=dg.AutomationCondition.eager() if automation else None,
        description=redact(f"{spec.display_path}.{col.name} = {col.expr!r}" if col.expr is not None
                           else f"{spec.display_path}.{col.name}: inserted {col.col_type!r} values"),
    )


class _Progress:
    """Logs 'k/n rows' at most every few seconds, so long batches show they are moving."""

    def __init__(self, log, what: str, total: int) -> None:
        self.log, self.what, self.total = log, what, total
        self.done, self.last = 0, time.monotonic()
        self.bar = console.bar(total, what)  # a tqdm bar, for a run in the notebook's own process

    def step(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.done >= self.total:
                self.bar.close()
        now = time.monotonic()
        if now - self.last >= _PROGRESS_EVERY_S and self.done < self.total:
            self.last = now
            self.log.info(f"{self.what}: {self.done}/{self.total} rows")


@contextlib.contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist before a batch (Dagster, pandas, definitions:
    hundreds of thousands) while the batch runs. Each row allocates enough to trigger collections, and every
    full collection walked all of them: about 7% of a batch's CPU (perf). Unfrozen afterwards, so nothing
    frozen stays uncollectable."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _row_pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A bounded thread pool for a batch's rows (Pillow and I/O release the GIL)."""
    memory.tune_malloc_for_batches()
    with _long_lived_objects_frozen(), \
            concurrent.futures.ThreadPoolExecutor(_WORKERS, thread_name_prefix="pxt-row") as pool:
        yield pool


def _map_rows(fn: Callable[[int], Any], n: int, progress: _Progress) -> list[Any]:
    """fn(i) for every row on the row pool, in row order."""
    results: list[Any] = [None] * n
    with _row_pool() as pool:
        futures = {pool.submit(fn, i): i for i in range(n)}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
            progress.step()
    return results


# ---------------------------------------------------------------------------------------------------------
# source columns


def build_source_asset(spec: TableSpec, pdef: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    columns = spec.source_columns()

    @dg.multi_asset(
        name=f"{spec.slug}__source",
        outs={c.name: _out(spec, c, pdef, required=True) for c in columns},
        partitions_def=pdef,
        required_resource_keys={MEDIA_IO},
    )
    @scrubbing  # a failed step's error, as Dagster stores it, carries no credential
    def source(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
        media_io: MediaIOManager = getattr(context.resources, MEDIA_IO)
        batch = context.partition_key
        _on_worker(context)
        rows = media_io.manifest(spec, batch)
        media_io.start_run(spec, batch, context.run_id)
        bad_rows: set[int] = set()
        for col in columns:
            writer = media_io.writer_for(spec, col) if col.is_media and col.destination else None
            progress = _Progress(context.log, col.name, len(rows))
            records = _map_rows(
                lambda i: ingest_value(col, writer, row_id(batch, i), rows[i].get(col.name)),
                len(rows), progress,
            )
            if writer is not None:
                writer.flush()
            for i, r in enumerate(records):
                if r["error"] is not None:
                    bad_rows.add(i)
                    named = r["error"].startswith(f"{col.name}: ")
                    context.log.warning(f"row {r['row_id']} {'' if named else col.name + ': '}{r['error']}")
            yield dg.Output(records, output_name=col.name)
        context.log.info(f"{spec.display_path}: {len(rows)} rows inserted with {len(bad_rows)} errors")
        if not _computed_later_in_run(context, spec):
            _commit(context, media_io, spec, batch)

    return source


# ---------------------------------------------------------------------------------------------------------
# views: the iterator step


#: files an iterator step writes concurrently (frames being encoded and uploaded): bounds memory too
_WRITES_IN_FLIGHT = 8


def frame_reference(video_uri: str, time_s: float, pts: int | None, version: Any = None) -> str:
    """The value of a frame that is not written (a frame_iterator view without a destination): the video's
    URL with a media fragment naming the frame's time; the frame is decoded again from there when read.
    `v=` (the video's version, e.g. its mtime and size) makes a video changed in place give new values, so
    columns computed from its frames are recomputed and cached copies are not served."""
    ref = f"{video_uri}#t={time_s:.6f}&pts={'' if pts is None else pts}"
    if version is not None:
        ref += "&v=" + hashlib.sha1(str(version).encode()).hexdigest()[:10]
    return ref


def _file_version(uri: str, recorded: Any) -> Any:
    """A base file's version as it is now: a local file edited in place since it was inserted is a new
    input (its mtime and size); remote files are immutable under their URI."""
    local = stores.store_for(uri).local_path(uri)
    if local is not None and local.is_file():
        stat = local.stat()
        return f"{stat.st_mtime_ns}:{stat.st_size}"
    return recorded


def build_view_asset(view, pdef: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """A view's one step: its iterator runs over each base row of the batch, making its rows (`pos` and the
    iterator's columns, media written through the column writers), and the view's computed columns are
    computed on each row as it is made, while its frame or page is still in memory: a video is decoded once
    however many columns read its frames, and no step holds more than a few frames. A run of computed
    columns alone (a column added later) reads the view's rows instead, re-extracting frames that were not
    written from the video, in order."""
    from pxt_assets.api.view import iterator_kwargs, iterator_of

    spec, base = view.spec, view.base_spec
    call, it = view.iterator, iterator_of(view.iterator)
    kwargs = iterator_kwargs(call)
    input_col = call.args[0].name
    columns = view.iterator_columns()
    outputs = [c for c in columns if c.name != "pos"]
    computed_cols = spec.computed_columns()
    name = call.fn.rsplit(".", 1)[-1]
    image_format = kwargs.get("image_format")  # document page images: the format asked for
    outs = {c.name: _out(spec, c, pdef, required=False, automation=view.automation) for c in columns}
    outs.update({c.name: _out(spec, c, pdef, required=False, automation=view.automation) for c in computed_cols})
    internal = {c.name: {asset_key(base, input_col)} for c in columns}
    internal.update({c.name: {asset_key(spec, n) for n in c.expr.columns()} for c in computed_cols})

    @dg.multi_asset(
        name=f"{spec.slug}__view",
        outs=outs,
        deps=[asset_key(base, input_col)],
        internal_asset_deps=internal,
        partitions_def=pdef,
        can_subset=True,
        required_resource_keys={MEDIA_IO},
    )
    @scrubbing
    def view_step(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
        media_io: MediaIOManager = getattr(context.resources, MEDIA_IO)
        batch = context.partition_key
        _on_worker(context)
        chosen = context.selected_output_names
        selected = [c for c in computed_cols if c.name in chosen]
        if not any(c.name in chosen for c in columns):  # computed columns alone: from the stored rows
            media_io.start_run(spec, batch, context.run_id)
            frames = compute_batch(spec, selected, batch, media_io, context.log)
            for col in selected:
                yield dg.Output(frames[col.name], output_name=col.name)
            _commit(context, media_io, spec, batch)
            return
        missing = sorted({n for c in selected for n in c.expr.columns()
                          if n in spec.columns and spec.columns[n].is_computed and n not in chosen}
                         | {c.name for c in columns if c.name not in chosen})  # the rows are made whole
        if missing:
            raise dg.Failure(f"view {spec.display_path!r}: making its rows computes its columns with them; "
                             f"select {missing} too (or materialize every column of the view)")
        store = media_io.rowstore()
        info = store.batch_info(base.slug, batch)
        if info is None or info.status != "committed":
            raise dg.Failure(f"view {spec.display_path!r}: batch {batch!r} of {base.display_path!r} is not "
                             "committed yet; it runs once the base table's batch is")
        base_rt = store.row_table(base.slug)
        got = store.read_columns(base_rt, batch, [input_col]).get(input_col, {}) if base_rt is not None else {}
        rt = store.for_spec(spec)
        store.create_batch(spec.slug, batch, [], source={"view_of": base.display_path})
        media_io.start_run(spec, batch, context.run_id)
        previous = store.read_columns(rt, batch, [c.name for c in selected]) if selected else {}
        computer = _Computer(spec, selected, media_io, previous) if selected else None
        writers = {c.name: media_io.writer_for(spec, c) for c in outputs if c.is_media and c.destination}
        reader = media_io.reader()
        records: list[dict[str, dict[str, Any]]] = []  # per row: column -> record (iterator's and computed)
        counts = {"rows": 0, "failed": 0}

        def make_row(rid: str, pos: int, item: dict[str, Any], base_uri: str,
                     base_version: Any) -> tuple[dict[str, dict[str, Any]], Row, dict[str, Any]]:
            """The row's iterator records, its files written; a Row holding its values (and media in memory);
            the inputs' versions (the base file's, so a video changed in place recomputes its frames' columns)."""
            recs: dict[str, dict[str, Any]] = {"pos": {**new_record(rid, False, None, base_version), "value": pos}}
            row = Row(spec, reader, rid, {"pos": pos})
            versions = {c.name: base_version for c in columns}
            for col in outputs:
                rec = recs[col.name] = new_record(rid, col.is_media, col.destination, base_version)
                value = item.get(col.name)
                try:
                    if value is None:
                        pass
                    elif col.is_media and col.name in writers:
                        if isinstance(value, PIL.Image.Image):
                            rec["value"] = writers[col.name].write_image(rid, value, image_format)
                            row.objects[col.name] = value
                        else:  # a temporary file the iterator wrote (an audio segment)
                            tmp = pathlib.Path(value)
                            try:
                                rec["value"] = writers[col.name].copy_file(rid, tmp, suffix_of(str(tmp)))
                            finally:
                                tmp.unlink(missing_ok=True)
                        rec["owned"] = True
                    elif col.is_media:  # a frame not written: a reference into the video
                        attrs = item.get("frame_attrs") or {}
                        rec["value"] = frame_reference(base_uri, attrs.get("time", 0.0), attrs.get("pts"),
                                                       base_version)
                        row.objects[col.name] = value
                    else:
                        rec["value"] = as_json(value) if col.col_type.name == "Json" else value
                except Exception as e:  # noqa: BLE001 - the row's error
                    rec["value"], rec["error"], rec["errortype"] = None, redact(f"{col.name}: {e}"), error_kind(e)
                    row.set_error(col.name, e)
                row.stored[col.name] = rec["value"]
            return recs, row, versions

        def finish(rid: str, pos: int, item: dict[str, Any], base_uri: str,
                   base_version: Any) -> tuple[dict[str, dict[str, Any]], Any]:
            recs, row, versions = make_row(rid, pos, item, base_uri, base_version)
            if computer is None:
                return recs, None
            if computer.has_deferred:
                return recs, (row, versions)
            recs.update(computer.process(row, versions))
            return recs, None

        pending: list[concurrent.futures.Future] = []
        chunk: list[tuple[dict[str, dict[str, Any]], tuple[Row, dict[str, Any]]]] = []

        def settle(keep: int, pool: concurrent.futures.Executor) -> None:
            while len(pending) > keep:
                recs, deferred_row = pending.pop(0).result()
                if deferred_row is None:
                    records.append(recs)
                    continue
                chunk.append((recs, deferred_row))
                if len(chunk) >= computer.chunk_size or (keep == 0 and not pending):
                    flush_chunk(pool)
            if keep == 0 and chunk:
                flush_chunk(pool)

        def flush_chunk(pool: concurrent.futures.Executor) -> None:
            outs = computer.process_chunk(pool, [r for _, r in chunk])
            for (recs, _), out in zip(chunk, outs):
                recs.update(out)
                records.append(recs)
            chunk.clear()

        def failed_row(message: str) -> None:
            rid = row_id(batch, counts["rows"])
            counts["rows"] += 1
            counts["failed"] += 1
            recs = {}
            for col in [*columns, *selected]:
                r = new_record(rid, col.writes_files, col.destination)
                r["error"], r["errortype"] = f"{col.name}: {message}", "iterator_error"
                recs[col.name] = r
            records.append(recs)

        progress_at = time.monotonic()
        memory.tune_malloc_for_batches()
        with _long_lived_objects_frozen(), \
                concurrent.futures.ThreadPoolExecutor(_WRITES_IN_FLIGHT, thread_name_prefix="pxt-view") as pool:
            try:
                for base_rid in sorted(got, key=lambda r: int(r.rsplit("-", 1)[-1])):
                    rec = got[base_rid]
                    uri = None if is_missing(rec.get("value")) else rec["value"]
                    if uri is None or not is_missing(rec.get("error")):
                        continue  # a base row without a value (or in error) has no rows here, as in Pixeltable
                    try:
                        version = _file_version(uri, rec.get("version"))
                        with reader.open(uri) as path:
                            for pos, item in enumerate(it.run(str(path), **kwargs)):
                                rid = row_id(batch, counts["rows"])
                                counts["rows"] += 1
                                pending.append(pool.submit(finish, rid, pos, item, uri, version))
                                settle(_WRITES_IN_FLIGHT, pool)  # frames in flight stay bounded
                                if time.monotonic() - progress_at >= _PROGRESS_EVERY_S:
                                    progress_at = time.monotonic()
                                    context.log.info(f"{spec.display_path}: {counts['rows']} rows so far ({base_rid})")
                            settle(0, pool)
                    except Exception as e:  # noqa: BLE001 - the base row's failure is one row in error, visible
                        settle(0, pool)
                        message = redact(f"{name} failed on {base.display_path} row {base_rid} ({uri}): {e}")
                        context.log.warning(message)
                        failed_row(message)
            finally:
                close_frame_cursors()
        for writer in writers.values():
            writer.flush()
        for col in columns:
            if col.name in chosen:
                yield dg.Output([r[col.name] for r in records], output_name=col.name)
        if computer is not None:
            frames = computer.finish(records, context.log)
            for col in selected:
                yield dg.Output(frames[col.name], output_name=col.name)
        context.log.info(f"{spec.display_path}: {counts['rows']} rows from {len(got)} rows of "
                         f"{base.display_path} ({counts['failed']} failed)")
        _commit(context, media_io, spec, batch)

    return view_step


# ---------------------------------------------------------------------------------------------------------
# computed columns


def build_computed_asset(spec: TableSpec, pdef: dg.PartitionsDefinition, automation: bool = True) -> dg.AssetsDefinition | None:
    columns = spec.computed_columns()
    if not columns:
        return None
    sources = spec.source_columns()

    @dg.multi_asset(
        name=f"{spec.slug}__computed",
        outs={c.name: _out(spec, c, pdef, required=False, automation=automation) for c in columns},
        deps=[asset_key(spec, c.name) for c in sources if any(c.name in x.expr.columns() for x in columns)],
        internal_asset_deps={c.name: {asset_key(spec, n) for n in c.expr.columns()} for c in columns},
        partitions_def=pdef,
        can_subset=True,
        required_resource_keys={MEDIA_IO},
    )
    @scrubbing
    def computed(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
        media_io: MediaIOManager = getattr(context.resources, MEDIA_IO)
        batch = context.partition_key
        _on_worker(context)
        selected = [c for c in columns if c.name in context.selected_output_names]
        media_io.start_run(spec, batch, context.run_id)
        frames = compute_batch(spec, selected, batch, media_io, context.log)
        for col in selected:  # definition order is topological: a column only reads earlier ones
            yield dg.Output(frames[col.name], output_name=col.name)
        # Dagster stores each output (stages it) as it is yielded: everything is staged by now.
        _commit(context, media_io, spec, batch)

    return computed


def _computed_later_in_run(context: dg.AssetExecutionContext, spec: TableSpec) -> bool:
    """Whether this run also computes columns of the table (then that step commits the batch)."""
    planned = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
    return any(asset_key(spec, c.name) in planned for c in spec.computed_columns())


def _on_worker(context: dg.AssetExecutionContext) -> None:
    """Say which worker runs the step, when it has a name (PXT_WORKER_NAME: scale-out demos and tests)."""
    name = os.environ.get("PXT_WORKER_NAME")
    if name:
        context.log.info(f"pxt worker {name}: step {context.op_def.name}")


def _commit(context: dg.AssetExecutionContext, media_io: MediaIOManager, spec: TableSpec, batch: str) -> None:
    result = media_io.commit(spec, batch, context.log, context.run_id)
    context.log.info(f"{spec.display_path}: batch {batch} committed: {result.rows} rows, {result.errors} with errors")


class _Computer:
    """Computes selected computed columns for rows of one batch: the per-row work shared by a table's computed
    step (rows read from storage) and a view's iterator step (rows just made, their media still in memory).

    On a re-run, a row whose previous value had no error and whose inputs (fingerprinted with the
    expression) are unchanged is kept as it was: nothing is fetched, decoded or written for it. Rows go
    through every column in one pass per row, so a source is fetched and decoded once however many columns
    read it. When a column calls a batched or async UDF, rows go in chunks instead (`process_chunk`): the
    chunk's calls are made together, then each row is finished.
    """

    def __init__(self, spec: TableSpec, selected: list[ColumnSpec], media_io: MediaIOManager,
                 previous: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.spec, self.selected = spec, selected
        self.writers = {c.name: media_io.writer_for(spec, c) for c in selected if c.writes_files}
        self.reader = media_io.reader()
        self.previous = previous
        self.skipped = {c.name: 0 for c in selected}
        self._lock = threading.Lock()
        self.releasable = _released_after(selected)
        self.deferred = {c.name: deferred_calls(c.expr) for c in selected}
        self.has_deferred = any(self.deferred.values())
        self.chunk_size = _chunk_rows([call for calls in self.deferred.values() for call in calls])

    def unchanged(self, row: Row, col: ColumnSpec, versions: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """The cell's fingerprint, and its previous record if that can be kept."""
        fingerprint = _fingerprint(col, row, versions)
        versions[col.name] = fingerprint
        before = self.previous.get(col.name)
        old = before.get(row.row_id) if before is not None else None
        if old is None or old["version"] != fingerprint or not is_missing(old["error"]):
            return fingerprint, None
        rec = {k: (None if is_missing(v) else v) for k, v in old.items()}
        row.stored[col.name] = rec["value"]
        with self._lock:
            self.skipped[col.name] += 1
        return fingerprint, rec

    def compute(self, row: Row, col: ColumnSpec, fingerprint: str) -> dict[str, Any]:
        rec = new_record(row.row_id, col.writes_files, col.destination, fingerprint)
        try:
            if col.is_file_list:
                rec["value"] = _iterate_into(self.writers[col.name], col, row)
                rec["owned"] = True
                row.set_result(col.name, rec["value"], rec["value"])
                return rec
            result = row.evaluate(col.expr)
            if col.is_media:
                rec["value"], rec["owned"] = _store_media(self.writers[col.name], col, row.row_id, result), True
                if isinstance(result, PIL.Image.Image):
                    row.set_result(col.name, result, rec["value"])
                else:  # a file: later columns read it from where it was stored
                    row.stored[col.name] = rec["value"]
            else:
                # the stored value is a copy: a later UDF that changes its argument cannot change it
                rec["value"] = as_json(result) if col.col_type.name == "Json" else result
                row.set_result(col.name, result, result)
        except Exception as e:  # noqa: BLE001 - a bad row is recorded, not fatal to the batch
            row.set_error(col.name, e)
            message = row.errors[col.name]  # redacted
            if row.errortypes[col.name] == "udf_error" or isinstance(e, StoreError):
                # name the column too: it is shown on its own (a store error names the file and the cause)
                message = row.errors[col.name] = f"{col.name}: {message}"
            rec["error"], rec["errortype"] = message, row.errortypes[col.name]
        return rec

    def process(self, row: Row, versions: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Every selected column of one row, in one pass."""
        out: dict[str, dict[str, Any]] = {}
        for col in self.selected:
            fingerprint, kept = self.unchanged(row, col, versions)
            out[col.name] = kept if kept is not None else self.compute(row, col, fingerprint)
            for name in self.releasable[col.name]:
                row.release(name)
        return out

    def process_chunk(self, pool: concurrent.futures.Executor,
                      loaded: list[tuple[Row, dict[str, Any]]]) -> list[dict[str, dict[str, Any]]]:
        """Rows column by column, each column's batched and async calls made for the chunk at once."""
        outs: list[dict[str, dict[str, Any]]] = [{} for _ in loaded]
        for col in self.selected:
            todo = []
            for k, (row, versions) in enumerate(loaded):
                fingerprint, kept = self.unchanged(row, col, versions)
                if kept is not None:
                    outs[k][col.name] = kept
                else:
                    todo.append((k, fingerprint))
            rows = [loaded[k][0] for k, _ in todo]
            for call in self.deferred[col.name]:
                make_calls(rows, call, pool.map)
            for (k, _), rec in zip(todo, pool.map(lambda t: self.compute(loaded[t[0]][0], col, t[1]), todo)):
                outs[k][col.name] = rec
            for row, _ in loaded:
                row.made.clear()
                for name in self.releasable[col.name]:
                    row.release(name)
        return outs

    def finish(self, results: list[dict[str, dict[str, Any]]], log) -> dict[str, list[dict[str, Any]]]:
        """Each column's records, once every file is in the cache; one log line per column."""
        for writer in self.writers.values():
            writer.flush()  # every uploaded file is in the cache before the rows are recorded
        frames = {c.name: [r[c.name] for r in results] for c in self.selected}
        lines = []
        for col in self.selected:  # one log event for all columns: each event is a write to the run's event log
            errs = count_errors(frames[col.name])
            done = len(results) - self.skipped[col.name]
            lines.append(f"{self.spec.display_path}.{col.name}: added {done} column values with {errs} errors; "
                         f"skipped {self.skipped[col.name]} unchanged rows")
        if lines:
            log.info("\n".join(lines))
        return frames


def compute_batch(spec: TableSpec, selected: list[ColumnSpec], batch: str, media_io: MediaIOManager,
                  log) -> dict[str, list[dict[str, Any]]]:
    """Compute `selected` columns for every row of `batch`; returns each column's records.

    Columns the selection reads but does not compute (sources, or computed columns outside a subset) are
    read from storage. Each row's files are written through the media IO manager's column writers (see
    _Computer for re-runs, and for batched and async UDFs).
    """
    selected_names = {c.name for c in selected}
    needed: set[str] = set()
    for col in selected:
        needed |= col.expr.columns()
    # Row ids come from the first source column, which every batch has.
    first = spec.source_columns()[0].name
    stored_cols = sorted((needed - selected_names) | {first})
    got = media_io.read_columns(spec, batch, stored_cols + [c.name for c in selected])
    for name in stored_cols:
        if name not in got:
            raise FileNotFoundError(
                f"{spec.display_path}: column {name!r} has no data for batch {batch!r}; materialize it first"
            )
    by_col = {name: got[name] for name in stored_cols}
    row_ids = list(by_col[first])
    computer = _Computer(spec, selected, media_io, {c.name: got[c.name] for c in selected if c.name in got})

    def load(i: int) -> tuple[Row, dict[str, Any]]:
        rid = row_ids[i]
        values, errors, errortypes, versions = {}, {}, {}, {}
        for name, f in by_col.items():
            rec = f[rid]
            values[name] = None if is_missing(rec["value"]) else rec["value"]
            versions[name] = None if is_missing(rec.get("version")) else rec.get("version")
            if not is_missing(rec["error"]):
                errors[name], errortypes[name] = rec["error"], rec["errortype"]
        return Row(spec, computer.reader, rid, values, errors, errortypes), versions

    progress = _Progress(log, f"{spec.display_path} computed columns", len(row_ids))
    try:
        for name in stored_cols:  # frames that were not written: their videos are read once, in order
            if spec.columns.get(name) is not None and spec.columns[name].col_type.name == "Image":
                want_frames(computer.reader, (rec.get("value") for rec in by_col[name].values()))
        if computer.has_deferred:
            size = computer.chunk_size
            results = []
            with _row_pool() as pool:
                for start in range(0, len(row_ids), size):
                    indexes = range(start, min(len(row_ids), start + size))
                    results += computer.process_chunk(pool, list(pool.map(load, indexes)))
                    for _ in indexes:
                        progress.step()
        else:
            results = _map_rows(lambda i: computer.process(*load(i)), len(row_ids), progress)
    finally:
        close_frame_cursors()
    return computer.finish(results, log)


def _chunk_rows(calls: list[Any]) -> int:
    """Rows per chunk when columns call batched or async UDFs: whole batches, and enough async calls in
    flight to keep every slot busy; a chunk's decoded media are held together, so not more."""
    size = 16
    for call in calls:
        udf = call.udf
        if udf is None:  # a built-in's batch form (presigned_url: 100 URLs a control-plane request)
            size = max(size, 100)
            continue
        size = max(size, udf.batch_size if udf.batch_size is not None else 4 * udf.max_concurrency)
    return size


def _iterate_into(writer, col: ColumnSpec, row: Row) -> list[Any]:
    """An iterator as a column: run it on the row's input and write each media item it makes under the
    column's destination (deterministic names: row id and position); the value lists the items, media as
    their fileurls, other outputs (texts, times, attributes) inline. One item is held at a time."""
    from pxt_assets.api.view import iterator_kwargs, iterator_of

    it = iterator_of(col.expr)
    path = row.evaluate(col.expr.args[0])
    if path is None:
        return None
    out: list[dict[str, Any]] = []
    written: list[str] = []
    kwargs = iterator_kwargs(col.expr)
    image_format = kwargs.get("image_format")
    items = it.run(str(path), **kwargs)
    try:
        for pos, item in enumerate(items):
            entry: dict[str, Any] = {"pos": pos}
            for name, value in item.items():
                if isinstance(value, PIL.Image.Image):
                    entry[name] = writer.write_image(f"{row.row_id}-{pos:06d}", value, fmt=image_format)
                    written.append(entry[name])
                elif name == "audio_segment" and value is not None:
                    tmp = pathlib.Path(value)
                    try:
                        entry[name] = writer.copy_file(f"{row.row_id}-{pos:06d}", tmp, suffix_of(str(tmp)))
                        written.append(entry[name])
                    finally:
                        tmp.unlink(missing_ok=True)
                else:
                    entry[name] = as_json(value)
            out.append(entry)
    except BaseException:
        for uri in written:  # the row is an error: nothing names these files, so none stays behind
            try:
                stores.store_for(uri).delete(uri)
            except stores.StoreError:
                pass
        raise
    finally:
        items.close()  # an audio splitter's last temporary segment, an open video or PDF
    return out


def _store_media(writer, col: ColumnSpec, rid: str, result: Any) -> str:
    """Write a computed media value: an image made in memory, or a file a UDF wrote (copied to the column's
    destination under a deterministic name; the UDF's own file is left as it was)."""
    if isinstance(result, PIL.Image.Image) and col.col_type.name == "Image":
        return writer.write_image(rid, result)
    if isinstance(result, pathlib.Path):
        if not result.is_file():
            raise RowError(f"the returned file {result} does not exist", "not_found")
        if col.col_type.name == "Image":
            check_image(result)
        return writer.copy_file(rid, result, suffix_of(str(result)))
    raise RowError(f"expected {'an image' if col.col_type.name == 'Image' else 'a file path'}, "
                   f"got {type(result).__name__}", "type_error")


def _released_after(selected: list[ColumnSpec]) -> dict[str, list[str]]:
    """For each selected column, the columns whose in-memory values no later selected column reads: they
    are dropped from the row once it is computed (see Row.release), so a row holds one source image and
    the image being written, not every image it made."""
    last_reader: dict[str, str] = {}
    for col in selected:
        last_reader[col.name] = col.name  # read by nothing later: released as soon as it is stored
        for name in col.expr.columns():
            last_reader[name] = col.name
    released: dict[str, list[str]] = {c.name: [] for c in selected}
    for name, reader in last_reader.items():
        released[reader].append(name)
    return released


def _fingerprint(col: ColumnSpec, row: Row, versions: dict[str, Any]) -> str:
    """What a computed value depends on: its expression, and each input's stored value, version and error."""
    parts = [col.expr.code_version()]
    for name in sorted(col.expr.columns()):
        parts.append([name, str(row.stored.get(name)), versions.get(name), row.errors.get(name)])
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:20]
