"""A view's step: its iterator makes the batch's rows from its base table's batch, and its computed columns
are computed on each row as it is made."""

# No `from __future__ import annotations`: Dagster reads the step functions' context annotations.

import concurrent.futures
import hashlib
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import PIL.Image

from pxt_assets import memory, stores
from pxt_assets.assets import renewal
from pxt_assets.assets.computed import Computer, FrameStream, compute_batch
from pxt_assets.assets.names import MEDIA_IO, asset_key, column_out
from pxt_assets.assets.run import PROGRESS_EVERY_S, batch_step, commit, long_lived_objects_frozen, on_worker
from pxt_assets.evaluate import Row, as_json, close_frame_cursors, error_kind, frame_reference_of, is_missing
from pxt_assets.io_managers import MediaIOManager
from pxt_assets.io_managers.rows import new_record, row_id
from pxt_assets.media import suffix_of
from pxt_assets.redaction import redact, scrubbing
from pxt_assets.spec import ColumnSpec, iterator_kwargs, iterator_of

#: the iterator whose frames may be references into their video (not written)
FRAME_ITERATOR = "video.frame_iterator"
#: files an iterator step writes concurrently (frames being encoded and uploaded): bounds memory too
_WRITES_IN_FLIGHT = 8
#: a frame view's column of frame attributes: some only the decoder knows (see fill_frame_attrs)
FRAME_ATTRS = "frame_attrs"


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
    spec, base = view.spec, view.base_spec
    input_col = view.iterator.args[0].name
    columns = view.iterator_columns()
    computed_cols = spec.computed_columns()
    copied = [n for n in getattr(view, "base_columns", []) if n in spec.columns and n in base.columns]
    outs = {c.name: column_out(spec, c, pdef, required=False, automation=view.automation)
            for c in [*columns, *computed_cols]}
    internal = {c.name: {asset_key(base, c.name if c.name in copied else input_col)} for c in columns}
    internal.update({c.name: {asset_key(spec, n) for n in c.expr.columns()} for c in computed_cols})

    @dg.multi_asset(
        name=f"{spec.slug}__view",
        outs=outs,
        deps=sorted({asset_key(base, n) for n in [input_col, *copied]}, key=lambda k: k.to_user_string()),
        internal_asset_deps=internal,
        partitions_def=pdef,
        can_subset=True,
        required_resource_keys={MEDIA_IO},
    )
    @scrubbing
    @batch_step(spec)
    def view_step(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
        media_io: MediaIOManager = getattr(context.resources, MEDIA_IO)
        batch = context.partition_key
        on_worker(context)
        chosen = context.selected_output_names
        selected = [c for c in computed_cols if c.name in chosen]
        if not any(c.name in chosen for c in columns):  # computed columns alone: from the stored rows
            media_io.start_run(spec, batch, context.run_id)
            store, pending = media_io.rowstore(), None
            if view.iterator.fn == FRAME_ITERATOR and batch in store.pending_values(spec.slug):
                if any(FRAME_ATTRS in c.expr.columns() for c in selected):  # they read the attributes: first
                    fill_frame_attrs(view, store, media_io.reader(), batch)
                else:  # the attributes of the frames a pass for these columns decodes (the rest decoded after)
                    pending = {}
            stream = _frame_stream(view, selected, batch, media_io, pending)
            pending = pending if stream is not None else None  # no pass: they wait for one (or a query)
            frames = compute_batch(spec, selected, batch, media_io, context.log, stream=stream)
            if pending is not None:
                fill_frame_attrs(view, store, media_io.reader(), batch, found=pending)
            for col in selected:
                yield dg.Output(frames[col.name], output_name=col.name,
                                metadata=renewal.output_metadata(col, frames[col.name]))
            commit(context, media_io, spec, batch)
            return
        missing = sorted({n for c in selected for n in c.expr.columns()
                          if n in spec.columns and spec.columns[n].is_computed and n not in chosen}
                         | {c.name for c in columns if c.name not in chosen})  # the rows are made whole
        if missing:
            raise dg.Failure(f"view {spec.display_path!r}: making its rows computes its columns with them; "
                             f"select {missing} too (or materialize every column of the view)")
        made = _ViewBatch(view, batch, selected, media_io, context)
        records = made.run()
        for col in columns:
            if col.name in chosen:
                yield dg.Output([r[col.name] for r in records], output_name=col.name)
        if made.computer is not None:
            frames = made.computer.finish(records, context.log)
            for col in selected:
                yield dg.Output(frames[col.name], output_name=col.name,
                                metadata=renewal.output_metadata(col, frames[col.name]))
        context.log.info(f"{spec.display_path}: {made.rows} rows from {made.base_rows} rows of "
                         f"{base.display_path} ({made.failed} failed)")
        commit(context, media_io, spec, batch)

    return view_step


def _frame_stream(view, selected: list[ColumnSpec], batch: str, media_io: MediaIOManager,
                  attrs: dict[str, dict[str, Any]] | None = None) -> FrameStream | None:
    """For columns computed on a frame_iterator view's existing rows whose frames were not written (a column
    added after the view was made): the batch's videos decoded again in one pass by the view's iterator, as
    when the rows were made, each frame with its stored reference (compute_batch computes each row as its
    frame comes, instead of seeking its frame in the video). None when nothing reads such frames. `attrs`:
    filled with each decoded frame's reference -> its frame_attrs."""
    if view.iterator.fn != FRAME_ITERATOR:
        return None
    made = iterator_of(view.iterator).outputs()
    frame_cols = [n for n, t in made.items() if t.is_media and n in view.spec.columns
                  and not view.spec.columns[n].destination]
    if not frame_cols or not any(frame_cols[0] in c.expr.columns() for c in selected):
        return None

    def frames(videos: set[str]) -> Iterator[tuple[str, PIL.Image.Image]]:
        for ref, item in _view_frames(view, batch, media_io.rowstore(), media_io.reader(), videos):
            if attrs is not None and isinstance(item.get(FRAME_ATTRS), dict):
                attrs[ref] = item[FRAME_ATTRS]
            yield ref, item[frame_cols[0]]

    return frame_cols[0], frames


def _view_frames(view, batch: str, store, reader, videos: set[str], **run_kwargs: Any
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
    """The items the view's iterator makes from the batch's videos (those in `videos`), decoded again in the
    order the rows were made, each with the reference its row stores (frame_reference). A video that fails
    now gives nothing (its rows read their frames from the video, and say why if they fail)."""
    base, input_col = view.base_spec, view.iterator.args[0].name
    base_rt = store.row_table(base.slug)
    got = store.read_columns(base_rt, batch, [input_col]).get(input_col, {}) if base_rt is not None else {}
    it, kwargs = iterator_of(view.iterator), {**iterator_kwargs(view.iterator), **run_kwargs}
    seen = set()
    for base_rid in sorted(got, key=lambda r: int(r.rsplit("-", 1)[-1])):  # the order rows were made in
        rec = got[base_rid]
        uri = None if is_missing(rec.get("value")) else rec["value"]
        if uri is None or not is_missing(rec.get("error")) or uri in seen or uri not in videos:
            continue
        seen.add(uri)
        try:
            version = _file_version(uri, rec.get("version"))
            with reader.open(uri) as path:
                for item in it.run(str(path), **kwargs):
                    attrs = item.get(FRAME_ATTRS) or {}
                    yield frame_reference(uri, attrs.get("time", 0.0), attrs.get("pts"), version), item
        except Exception:  # noqa: BLE001 - its rows read their frames from the video, and say why if they fail
            continue


def fill_frame_attrs(view, store, reader, batch: str, found: dict[str, dict[str, Any]] | None = None) -> bool:
    """Complete the frame_attrs of a frame view's committed batch whose rows were made from the videos' packets
    (iter_frames(decode=False): `dts`, `pict_type`, `is_corrupt` and `interlaced_frame` wait for a decoding
    pass): with the attributes of `found` (reference -> frame_attrs, from a pass that decoded the frames for a
    column), else by decoding the videos without pixels, as the rows were made before. The values are the
    decoder's, as if the rows had been made by decoding. A row whose video changed in place since (its
    reference matches no frame now) keeps what its packets gave. The batch is then complete; whether rows were
    filled."""
    rt = store.row_table(view.spec.slug)
    column = store.pending_values(view.spec.slug).get(batch) if rt is not None else None
    if column is None:
        return False
    frame_col = next((n for n, t in iterator_of(view.iterator).outputs().items() if t.is_media), None)
    got = store.read_columns(rt, batch, [frame_col, column]) if frame_col in rt.column_types else {}
    refs, attrs = got.get(frame_col, {}), got.get(column, {})
    todo = {rid: refs[rid]["value"] for rid, rec in attrs.items()
            if isinstance(rec.get("value"), dict) and rec["value"].get("pict_type") is None
            and isinstance((refs.get(rid) or {}).get("value"), str)}
    if not todo:  # rows complete (a re-run about to commit new ones keeps the mark until they are filled)
        return False
    found = dict(found or {})
    videos = {ref[0] for r in todo.values() if r not in found and (ref := frame_reference_of(r)) is not None}
    if videos:
        for ref, item in _view_frames(view, batch, store, reader, videos, pixels=False):
            if isinstance(item.get(FRAME_ATTRS), dict):
                found[ref] = item[FRAME_ATTRS]
    records = [{**attrs[rid], "value": as_json(found[ref])} for rid, ref in todo.items() if ref in found]
    return store.fill_pending(rt, batch, column, records, complete=True)


class _ViewBatch:
    """One batch of a view made from its base table's batch: the iterator runs over each base row, each item
    becomes a row (its media written, or a frame referenced in the video), and the selected computed columns
    are computed on it while its frame or page is in memory. Rows are made on a pool with at most
    _WRITES_IN_FLIGHT in flight; rows of batched or async UDF columns wait in chunks."""

    def __init__(self, view, batch: str, selected: list[ColumnSpec], media_io: MediaIOManager,
                 context: dg.AssetExecutionContext) -> None:
        self.spec, self.base, self.batch, self.context = view.spec, view.base_spec, batch, context
        self.call, self.iterator = view.iterator, iterator_of(view.iterator)
        self.kwargs = iterator_kwargs(self.call)
        self.input_col = self.call.args[0].name
        self.columns = view.iterator_columns()
        made = iterator_of(view.iterator).outputs(**{k: v for k, v in self.kwargs.items()
                                                   if k in ("elements", "metadata")})
        self.outputs = [c for c in self.columns if c.name in made]  # what the iterator makes
        base_columns = set(getattr(view, "base_columns", []))
        self.copied = [c for c in self.columns if c.name in base_columns and c.name not in made]
        self.plain = [c for c in self.columns if c.name != "pos" and c not in self.outputs and c not in self.copied]
        self.selected = selected
        self.image_format = self.kwargs.get("image_format")  # document page images: the format asked for
        self.store = media_io.rowstore()
        info = self.store.batch_info(self.base.slug, batch)
        if info is None or info.status != "committed":
            raise dg.Failure(f"view {self.spec.display_path!r}: batch {batch!r} of {self.base.display_path!r} is "
                             "not committed yet; it runs once the base table's batch is")
        base_rt = self.store.row_table(self.base.slug)
        read = (self.store.read_columns(base_rt, batch, [self.input_col, *(c.name for c in self.copied)])
                if base_rt is not None else {})
        self.got = read.get(self.input_col, {})
        self.base_records = {c.name: read.get(c.name, {}) for c in self.copied}  # a base column dropped: {}
        rt = self.store.for_spec(self.spec)
        self.store.create_batch(self.spec.slug, batch, [], source={"view_of": self.base.display_path})
        media_io.start_run(self.spec, batch, context.run_id)
        previous = self.store.read_columns(rt, batch, [c.name for c in selected]) if selected else {}
        self.computer = Computer(self.spec, selected, media_io, previous) if selected else None
        self.writers = {c.name: media_io.writer_for(self.spec, c) for c in self.outputs
                        if c.is_media and c.destination}
        self.reader = media_io.reader()
        # frames neither written nor read by a column here (create_view without a destination): the rows need
        # only their attributes, so the video is decoded without pixels (see iter_frames)
        self.run_kwargs = dict(self.kwargs)
        # and, where the container's packets say which frames there are, without decoding at all: the
        # attributes only the decoder knows are filled by the view's next decoding pass (fill_frame_attrs)
        if self.call.fn == FRAME_ITERATOR and self.computer is None and not self.writers:
            self.run_kwargs.update(pixels=False, decode=False)
        self.attrs_pending = False
        self.records: list[dict[str, dict[str, Any]]] = []  # per row: column -> record (iterator's, computed)
        self.rows = self.failed = 0
        self.base_rows = len(self.got)
        self.pending: list[concurrent.futures.Future] = []
        self.chunk: list[tuple[dict[str, dict[str, Any]], tuple[Row, dict[str, Any]]]] = []

    def run(self) -> list[dict[str, dict[str, Any]]]:
        """Every row of the batch, in order: per row, column -> record."""
        name = self.call.fn.rsplit(".", 1)[-1]
        progress_at = time.monotonic()
        memory.tune_malloc_for_batches()
        with long_lived_objects_frozen(), \
                concurrent.futures.ThreadPoolExecutor(_WRITES_IN_FLIGHT, thread_name_prefix="pxt-view") as pool:
            try:
                for base_rid in sorted(self.got, key=lambda r: int(r.rsplit("-", 1)[-1])):
                    rec = self.got[base_rid]
                    uri = None if is_missing(rec.get("value")) else rec["value"]
                    if uri is None or not is_missing(rec.get("error")):
                        continue  # a base row without a value (or in error) has no rows here, as in Pixeltable
                    try:
                        version = _file_version(uri, rec.get("version"))
                        with self.reader.open(uri) as path:
                            for pos, item in enumerate(self.iterator.run(str(path), **self.run_kwargs)):
                                self.attrs_pending = self.attrs_pending or bool(item.get("attrs_pending"))
                                rid = row_id(self.batch, self.rows)
                                self.rows += 1
                                self.pending.append(pool.submit(self._finish, rid, pos, item, uri, version,
                                                                base_rid))
                                self._settle(_WRITES_IN_FLIGHT, pool)  # frames in flight stay bounded
                                if time.monotonic() - progress_at >= PROGRESS_EVERY_S:
                                    progress_at = time.monotonic()
                                    self.context.log.info(f"{self.spec.display_path}: {self.rows} rows so far "
                                                          f"({base_rid})")
                            self._settle(0, pool)
                    except Exception as e:  # noqa: BLE001 - the base row's failure is one row in error, visible
                        self._settle(0, pool)
                        message = redact(f"{name} failed on {self.base.display_path} row {base_rid} "
                                         f"({self.input_col} {uri}): {e}")
                        self.context.log.warning(message)
                        # over a limit (or it crashed its reader), or an argument that cannot work on this file,
                        # says so; any other failure is the iterator's
                        code = error_kind(e)
                        self._failed_row(message, code if code in ("resource_limit", "invalid") else "iterator_error")
            finally:
                close_frame_cursors()
        for writer in self.writers.values():
            writer.flush()
        if self.call.fn == FRAME_ITERATOR:  # (a re-run's rows may be complete now)
            self.store.mark_pending(self.spec.slug, self.batch, FRAME_ATTRS if self.attrs_pending else None)
        return self.records

    def _make_row(self, rid: str, pos: int, item: dict[str, Any], base_uri: str,
                  base_version: Any, base_rid: str) -> tuple[dict[str, dict[str, Any]], Row, dict[str, Any]]:
        """The row's iterator records, its files written; a Row holding its values (and media in memory);
        the inputs' versions (the base file's, so a video changed in place recomputes its frames' columns).
        The base table's columns are the base row's values (and errors); plain columns are None."""
        recs: dict[str, dict[str, Any]] = {"pos": {**new_record(rid, False, None, base_version), "value": pos}}
        row = Row(self.spec, self.reader, rid, {"pos": pos})
        versions = {c.name: base_version for c in self.columns}
        for col in self.copied:
            got = self.base_records[col.name].get(base_rid) or {}
            rec = recs[col.name] = new_record(rid, col.is_media, None, got.get("version", base_version))
            for key in ("value", "error", "errortype"):
                rec[key] = None if is_missing(got.get(key)) else got.get(key)
            versions[col.name] = rec["version"]
            row.stored[col.name] = rec["value"]
            if rec["error"] is not None:
                row.errors[col.name], row.errortypes[col.name] = rec["error"], rec["errortype"] or "upstream_error"
        for col in self.plain:
            recs[col.name] = new_record(rid, col.is_media, col.destination, base_version)
            row.stored[col.name] = None
        for col in self.outputs:
            rec = recs[col.name] = new_record(rid, col.is_media, col.destination, base_version)
            value = item.get(col.name)
            try:
                if value is None and not (col.is_media and "frame_attrs" in item and col.name not in self.writers):
                    pass
                elif col.is_media and col.name in self.writers:
                    if isinstance(value, PIL.Image.Image):
                        rec["value"] = self.writers[col.name].write_image(rid, value, self.image_format)
                        row.objects[col.name] = value
                    else:  # a temporary file the iterator wrote (an audio segment)
                        tmp = pathlib.Path(value)
                        try:
                            rec["value"] = self.writers[col.name].copy_file(rid, tmp, suffix_of(str(tmp)))
                        finally:
                            tmp.unlink(missing_ok=True)
                    rec["owned"] = True
                elif col.is_media:  # a frame not written: a reference into the video (decoded or not)
                    attrs = item.get("frame_attrs") or {}
                    rec["value"] = frame_reference(base_uri, attrs.get("time", 0.0), attrs.get("pts"), base_version)
                    if value is not None:
                        row.objects[col.name] = value
                else:
                    rec["value"] = as_json(value) if col.col_type.name == "Json" else value
            except Exception as e:  # noqa: BLE001 - the row's error
                rec["value"], rec["error"], rec["errortype"] = None, redact(f"{col.name}: {e}"), error_kind(e)
                row.set_error(col.name, e)
            row.stored[col.name] = rec["value"]
        return recs, row, versions

    def _finish(self, rid: str, pos: int, item: dict[str, Any], base_uri: str,
                base_version: Any, base_rid: str) -> tuple[dict[str, dict[str, Any]], Any]:
        """On the pool: the row made, and its computed columns unless they wait for a chunk (then the row is
        returned to be computed with its chunk)."""
        recs, row, versions = self._make_row(rid, pos, item, base_uri, base_version, base_rid)
        if self.computer is None:
            return recs, None
        if self.computer.has_deferred:
            return recs, (row, versions)
        recs.update(self.computer.process(row, versions))
        return recs, None

    def _settle(self, keep: int, pool: concurrent.futures.Executor) -> None:
        """Collect finished rows, in order, until at most `keep` are in flight (0: all, and the last chunk)."""
        while len(self.pending) > keep:
            recs, deferred_row = self.pending.pop(0).result()
            if deferred_row is None:
                self.records.append(recs)
                continue
            self.chunk.append((recs, deferred_row))
            if len(self.chunk) >= self.computer.chunk_size or (keep == 0 and not self.pending):
                self._flush_chunk(pool)
        if keep == 0 and self.chunk:
            self._flush_chunk(pool)

    def _flush_chunk(self, pool: concurrent.futures.Executor) -> None:
        outs = self.computer.process_chunk(pool, [r for _, r in self.chunk])
        for (recs, _), out in zip(self.chunk, outs):
            recs.update(out)
            self.records.append(recs)
        self.chunk.clear()

    def _failed_row(self, message: str, errortype: str = "iterator_error") -> None:
        """A base row the iterator failed on: one row in error, in every column."""
        rid = row_id(self.batch, self.rows)
        self.rows += 1
        self.failed += 1
        recs = {}
        for col in [*self.columns, *self.selected]:
            r = new_record(rid, col.writes_files, col.destination)
            r["error"], r["errortype"] = f"{col.name}: {message}", errortype
            recs[col.name] = r
        self.records.append(recs)
