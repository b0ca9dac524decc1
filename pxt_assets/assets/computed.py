"""The computed step: a table's computed columns, one pass per row (a source fetched and decoded once however
many columns read it), or in chunks for batched and async UDFs; kept unchanged rows on a re-run."""

# No `from __future__ import annotations`: Dagster reads the step functions' context annotations.

import collections
import concurrent.futures
import hashlib
import json
import pathlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import PIL.Image

from pxt_assets import stores
from pxt_assets.assets import renewal
from pxt_assets.assets.names import MEDIA_IO, asset_key, column_out
from pxt_assets.assets.run import WORKERS, Progress, batch_step, commit, map_rows, on_worker, row_pool
from pxt_assets.evaluate import (
    Row,
    RowError,
    as_json,
    close_frame_cursors,
    deferred_calls,
    frame_reference_of,
    is_missing,
    make_calls,
    want_frames,
)
from pxt_assets.io_managers import MediaIOManager
from pxt_assets.io_managers.ingest import check_image
from pxt_assets.io_managers.rows import count_errors, new_record
from pxt_assets.media import suffix_of
from pxt_assets.redaction import scrubbing
from pxt_assets.spec import ColumnSpec, TableSpec, iterator_kwargs, iterator_of
from pxt_assets.stores import StoreError

#: row errors whose message gets the computed column's name in front (the others name it already, or are
#: about the column they read: `img: cannot decode ...`)
_NAMES_ITS_COLUMN = frozenset({"udf_error", "resource_limit", "decode_error"})


def build_computed_asset(spec: TableSpec, pdef: dg.PartitionsDefinition, automation: bool = True) -> dg.AssetsDefinition | None:
    columns = spec.computed_columns()
    if not columns:
        return None
    sources = spec.source_columns()

    @dg.multi_asset(
        name=f"{spec.slug}__computed",
        outs={c.name: column_out(spec, c, pdef, required=False, automation=automation) for c in columns},
        deps=[asset_key(spec, c.name) for c in sources if any(c.name in x.expr.columns() for x in columns)],
        internal_asset_deps={c.name: {asset_key(spec, n) for n in c.expr.columns()} for c in columns},
        partitions_def=pdef,
        can_subset=True,
        required_resource_keys={MEDIA_IO},
    )
    @scrubbing
    @batch_step(spec)
    def computed(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
        media_io: MediaIOManager = getattr(context.resources, MEDIA_IO)
        batch = context.partition_key
        on_worker(context)
        selected = [c for c in columns if c.name in context.selected_output_names]
        media_io.start_run(spec, batch, context.run_id)
        frames = compute_batch(spec, selected, batch, media_io, context.log)
        for col in selected:  # definition order is topological: a column only reads earlier ones
            yield dg.Output(frames[col.name], output_name=col.name,
                            metadata=renewal.output_metadata(col, frames[col.name]))
        # Dagster stores each output (stages it) as it is yielded: everything is staged by now.
        commit(context, media_io, spec, batch)

    return computed



class Computer:
    """Computes selected computed columns for rows of one batch: the per-row work shared by a table's computed
    step (rows read from storage) and a view's iterator step (rows just made, their media still in memory).

    On a re-run, a row whose previous value had no error and whose inputs (fingerprinted with the
    expression) are unchanged is kept as it was: nothing is fetched, decoded or written for it; except a
    column's presigned URLs past 80% of their lifetime, which are signed again (renewal.py). Rows go
    through every column in one pass per row, so a source is fetched and decoded once however many columns
    read it. When a column calls a batched or async UDF, rows go in chunks instead (`process_chunk`): the
    chunk's calls are made together, then each row is finished.
    """

    def __init__(self, spec: TableSpec, selected: list[ColumnSpec], media_io: MediaIOManager,
                 previous: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.spec, self.selected = spec, selected
        self.writers = {c.name: media_io.writer_for(spec, c) for c in selected
                        if c.writes_files and not c.is_reference}
        self.reader = media_io.reader()
        self.previous = previous
        self.code_versions: dict[str, str] = {}  # column -> its expression's code version, this step
        self.skipped = {c.name: 0 for c in selected}
        #: columns of presigned URLs -> their lifetime (None: each URL's own); how many rows each re-signed
        self.renewing = {c.name: c.presigned_lifetime for c in selected if c.stores_presigned_urls}
        self.renewed = {name: 0 for name in self.renewing}
        self._lock = threading.Lock()
        self.deferred = {c.name: deferred_calls(c.expr) for c in selected}
        self.has_deferred = any(self.deferred.values())
        # In chunks, only the columns that make batched or async calls, or read one that does, go column by
        # column; the others go first, row by row, so a chunk never holds every row's decoded source
        # (100 rows of a 1024x768 image are 236 MB) while the batch calls wait for the chunk.
        waiting: set[str] = set()
        for col in selected:  # definition order is topological
            if self.deferred[col.name] or col.expr.columns() & waiting:
                waiting.add(col.name)
        self.per_row = [c for c in selected if c.name not in waiting]
        self.per_chunk = [c for c in selected if c.name in waiting]
        self.releasable = _released_after(self.per_row + self.per_chunk)
        self.chunk_size = _chunk_rows([call for calls in self.deferred.values() for call in calls])

    def unchanged(self, row: Row, col: ColumnSpec, versions: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """The cell's fingerprint, and its previous record if that can be kept."""
        code = self.code_versions.get(col.name)
        if code is None:  # once per column and step: the expression's code (its UDFs imported) does not change
            code = self.code_versions[col.name] = col.expr.code_version()
        fingerprint = _fingerprint(col, code, row, versions)
        versions[col.name] = fingerprint
        before = self.previous.get(col.name)
        old = before.get(row.row_id) if before is not None else None
        if old is None or old["version"] != fingerprint or not is_missing(old["error"]):
            return fingerprint, None
        if col.name in self.renewing and renewal.is_stale(old["value"], self.renewing[col.name]):
            with self._lock:
                self.renewed[col.name] += 1
            return fingerprint, None  # the same inputs, but its URLs are about to expire: signed again
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
            if col.is_reference:  # the same file as the column it names (its error, if it has one)
                if col.expr.name in row.errors:
                    row.evaluate(col.expr)  # raises the upstream error
                rec["value"] = row.stored[col.name] = row.stored.get(col.expr.name)
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
            if row.errortypes[col.name] in _NAMES_ITS_COLUMN or isinstance(e, StoreError):
                # name the column too: it is shown on its own (a store error names the file and the cause)
                if not message.startswith(f"{col.name}: "):
                    message = row.errors[col.name] = f"{col.name}: {message}"
            rec["error"], rec["errortype"] = message, row.errortypes[col.name]
        return rec

    def process(self, row: Row, versions: dict[str, Any],
                columns: list[ColumnSpec] | None = None) -> dict[str, dict[str, Any]]:
        """Every selected column (or `columns`) of one row, in one pass."""
        out: dict[str, dict[str, Any]] = {}
        for col in self.selected if columns is None else columns:
            fingerprint, kept = self.unchanged(row, col, versions)
            out[col.name] = kept if kept is not None else self.compute(row, col, fingerprint)
            for name in self.releasable[col.name]:
                row.release(name)
        return out

    def process_chunk(self, pool: concurrent.futures.Executor,
                      loaded: list[tuple[Row, dict[str, Any]]]) -> list[dict[str, dict[str, Any]]]:
        """The columns without batched or async calls row by row, then the others column by column, each
        column's batched and async calls made for the chunk at once."""
        outs = list(pool.map(lambda loaded_row: self.process(*loaded_row, self.per_row), loaded))
        for col in self.per_chunk:
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
            renewed = (f"; renewed {self.renewed[col.name]} rows' presigned URLs"
                       if self.renewed.get(col.name) else "")
            lines.append(f"{self.spec.display_path}.{col.name}: added {done} column values with {errs} errors; "
                         f"skipped {self.skipped[col.name]} unchanged rows{renewed}")
        if lines:
            log.info("\n".join(lines))
        return frames


#: frames of a view decoded in one pass, for its rows: (the frame column, a function yielding each frame's
#: stored reference and its image, in the order the view's iterator makes them, for the videos given)
FrameStream = tuple[str, Callable[[set[str]], Iterator[tuple[str, PIL.Image.Image]]]]


def compute_batch(spec: TableSpec, selected: list[ColumnSpec], batch: str, media_io: MediaIOManager,
                  log, stream: FrameStream | None = None) -> dict[str, list[dict[str, Any]]]:
    """Compute `selected` columns for every row of `batch`; returns each column's records.

    Columns the selection reads but does not compute (sources, or computed columns outside a subset) are
    read from storage. Each row's files are written through the media IO manager's column writers (see
    Computer for re-runs, and for batched and async UDFs).

    `stream` (a view whose frames are not written, its columns computed for the first time): rows are
    computed as their frames come out of one decoding pass, as when the view's rows are made; rows it does
    not give a frame (a video changed since) read theirs from the video as before.
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
    computer = Computer(spec, selected, media_io, {c.name: got[c.name] for c in selected if c.name in got})

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

    progress = Progress(log, f"{spec.display_path} computed columns", len(row_ids))
    try:
        streamed: dict[int, dict[str, dict[str, Any]]] = {}
        if stream is not None and stream[0] in by_col and not computer.has_deferred:
            streamed = _compute_streamed(stream, by_col[stream[0]], row_ids, load, computer, progress)
        rest = [i for i in range(len(row_ids)) if i not in streamed]
        for name in stored_cols:  # frames that were not written: their videos are read once, in order
            if spec.columns.get(name) is not None and spec.columns[name].col_type.name == "Image":
                want_frames(computer.reader, (by_col[name][row_ids[i]].get("value") for i in rest))
        if computer.has_deferred:
            size = computer.chunk_size
            results = []
            with row_pool() as pool:
                for start in range(0, len(row_ids), size):
                    indexes = range(start, min(len(row_ids), start + size))
                    results += computer.process_chunk(pool, list(pool.map(load, indexes)))
                    for _ in indexes:
                        progress.step()
        else:
            computed = map_rows(lambda k: computer.process(*load(rest[k])), len(rest), progress)
            results = [streamed[i] if i in streamed else None for i in range(len(row_ids))]
            for i, out in zip(rest, computed):
                results[i] = out
    finally:
        close_frame_cursors()
    return computer.finish(results, log)


def _compute_streamed(stream: FrameStream, frame_records: dict[str, dict[str, Any]], row_ids: list[str],
                      load: Callable[[int], tuple[Row, dict[str, Any]]], computer: Computer,
                      progress: Progress) -> dict[int, dict[str, dict[str, Any]]]:
    """Rows computed as their frames are decoded (see compute_batch): row index -> its records. Only rows
    with no previous value in any selected column (a re-run keeps unchanged rows without decoding); at most
    WORKERS rows, each holding its frame, are in flight while the next frames are decoded."""
    column, frames = stream

    def computed_before(rid: str) -> bool:  # a value that may be kept (see Computer.unchanged)
        for col in computer.selected:
            old = (computer.previous.get(col.name) or {}).get(rid)
            if old is not None and not is_missing(old.get("version")) and is_missing(old.get("error")):
                return True
        return False

    waiting: dict[str, list[int]] = {}  # a frame's stored reference -> the rows showing it
    for i, rid in enumerate(row_ids):
        rec = frame_records.get(rid) or {}
        if isinstance(rec.get("value"), str) and is_missing(rec.get("error")) and not computed_before(rid):
            waiting.setdefault(rec["value"], []).append(i)
    done: dict[int, dict[str, dict[str, Any]]] = {}
    if not waiting:
        return done

    def process(i: int, image: PIL.Image.Image) -> dict[str, dict[str, Any]]:
        row, versions = load(i)
        row.objects[column] = image
        return computer.process(row, versions)

    pending: collections.deque = collections.deque()

    def settle(keep: int) -> None:
        while len(pending) > keep:
            i, future = pending.popleft()
            done[i] = future.result()
            progress.step()

    with row_pool() as pool:
        made = frames({ref[0] for ref in map(frame_reference_of, waiting) if ref is not None})
        try:
            for ref, image in made:
                for k, i in enumerate(waiting.pop(ref, ())):  # a video in two base rows: a copy each
                    pending.append((i, pool.submit(process, i, image if k == 0 else image.copy())))
                settle(WORKERS)  # frames in flight stay bounded
                if not waiting:
                    break
        finally:
            made.close()
            settle(0)
    return done


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
                writer.delete(uri)
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
            check_image(result, col.name)
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


def _fingerprint(col: ColumnSpec, code_version: str, row: Row, versions: dict[str, Any]) -> str:
    """What a computed value depends on: its expression (`code_version`), and each input's stored value,
    version and error."""
    parts = [code_version]
    for name in sorted(col.expr.columns()):
        parts.append([name, str(row.stored.get(name)), versions.get(name), row.errors.get(name)])
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:20]
