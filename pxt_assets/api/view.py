"""Views: tables whose rows an iterator makes from a base table's rows (frames of videos, segments of audio,
chunks of documents), as Pixeltable's `create_view(path, base, iterator=...)`.

A view is a table: its own asset group, its own rows, computed columns (built-in or UDF) with
`destination=`, queries, lifecycle. Its batches are its base table's batches (the same dynamic partitions):
a new video adds only its frames. The iterator's output columns form the view's source step, which depends
on the base column it reads, so lineage runs from the base column through the view.
"""

from __future__ import annotations

import time
from typing import Any

import dagster as dg

from pxt_assets import assets as asset_builder
from pxt_assets import rowstore
from pxt_assets.api.table import MediaTable, declared_in_a_module
from pxt_assets.config import Settings
from pxt_assets.instance import get_instance
from pxt_assets.io_managers import destinations
from pxt_assets.media import Int
from pxt_assets.spec import (
    Call,
    ColumnSpec,
    SpecError,
    TableSpec,
    check_iterator_call,
    iterator_kwargs,
    iterator_of,
    parse_table_path,
    view_parts,
)

#: where a view's copy of a base column has its files: the base table's, referenced
BASE_COLUMN = "the base table's column (referenced)"


class MediaView(MediaTable, kind="view"):
    """A view: `pxt.create_view('dir/frames', videos, iterator=frame_iterator(videos.video, fps=1))`.

    Its columns, as Pixeltable's: the base table's (`frames.video`, values of the row's base row), `pos`, the
    iterator's outputs, plain columns (`frames.add_column(note=pxt.String)`: None until set) and computed
    columns over any of them."""

    def __init__(self, path: str, base: MediaTable, iterator: Call, *, destination: str | None = None,
                 settings: Settings | None = None, automation: bool = True) -> None:
        self._settings = settings
        self.automation = automation
        self._watch = None
        self._persistent = False
        self._table_id, self._version, self._entries = None, None, {}
        self._defs = None
        self._lazy, self._pending = declared_in_a_module(), {}
        self._views = {}
        self.spec = TableSpec(parse_table_path(path))
        if self.spec.path == base.spec.path:
            raise SpecError(f"view {path!r} cannot be its own base table")
        if isinstance(base, MediaView):
            raise SpecError(f"view {path!r}: the base {base.path!r} is a view; views of views are not supported")
        it, _ = check_iterator_call(iterator, base.spec.columns, f"view {path!r}")
        self.base_spec = TableSpec(base.spec.path, dict(base.spec.columns))
        self.iterator = iterator
        self.iterator_destination = destination
        outputs = it.outputs(**{k: v for k, v in iterator_kwargs(iterator).items()
                                if k in ("elements", "metadata")})
        # The base table's columns, as Pixeltable's views have them (`frames.video`): each view row holds its
        # base row's values, taken when the row is made (a media value references the base's file). A base
        # column named like an iterator column is the iterator's here.
        self.base_columns = [n for n in base.spec.columns if n != "pos" and n not in outputs]
        for name in self.base_columns:
            column = ColumnSpec(name, base.spec.columns[name].col_type)
            self._place(column, lambda: destinations.Resolved(None, BASE_COLUMN))
            self.spec.columns[name] = column
        self.spec.columns["pos"] = ColumnSpec("pos", Int, None, None, None, "iterator position")
        for name, col_type in outputs.items():
            column = ColumnSpec(name, col_type, None, destination if col_type.is_media else None)
            self._place(column, lambda name=name, col_type=col_type: _resolve_output(name, col_type, iterator,
                                                                                   destination, self.settings))
            self.spec.columns[name] = column
        base._add_view(self)  # a batch inserted through `base` makes its rows here too

    # -- what makes it a view ------------------------------------------------------------------------------
    @property
    def base_path(self) -> str:
        return self.base_spec.display_path

    def iterator_columns(self) -> list[ColumnSpec]:
        """The columns the view's step makes with each row: the base table's (copied from the base row),
        `pos` and the iterator's outputs, and plain columns added with add_column (None)."""
        return self.spec.source_columns()

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        raise SpecError(f"view {self.path!r} gets its rows from {self.base_path!r}: insert into that table")

    def watch(self, *args: Any, **kwargs: Any) -> None:
        raise SpecError(f"view {self.path!r} gets its rows from {self.base_path!r}: watch that table")

    @property
    def partitions_def(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=asset_builder.partitions_name(self.base_spec))

    def assets_definitions(self) -> list[dg.AssetsDefinition]:
        return [asset_builder.build_view_asset(self, self.partitions_def)]

    def _describe(self, outcome: Any) -> str:
        noun = "row" if outcome.num_rows == 1 else "rows"
        return (f"View {self.path!r}: {outcome.num_rows} {noun} with {outcome.num_errors} errors from batch "
                f"{outcome.batch} of {self.base_path!r} in {outcome.seconds:.2f} s")

    def _populate(self, instance: dg.DagsterInstance | None = None) -> int:
        """Make the view's rows for every committed batch of its base table (as create_view does)."""
        for batch in self._rowstore().batches(self.base_spec.slug, rowstore.COMMITTED):
            if instance is None:
                instance = get_instance()
            self._run_batch(batch, instance, time.monotonic(), doing="computing view")
        return self.count()

    def _complete(self, columns: set[str] | None) -> None:
        """Before a query reads `columns` (None: all): a frame view's rows made from their videos' packets
        (create_view decodes nothing when the container says which frames there are) have the frame attributes
        only the decoder knows filled now, by one decoding pass without pixels, unless a column's pass filled
        them already (assets/view.py fill_frame_attrs). Any process reading them does it; the values are the
        decoder's, the same as when create_view decoded the videos."""
        from pxt_assets.assets.view import FRAME_ATTRS, FRAME_ITERATOR, fill_frame_attrs

        if self.iterator.fn != FRAME_ITERATOR or (columns is not None and FRAME_ATTRS not in columns):
            return
        store = self._rowstore()
        todo = store.pending_values(self.spec.slug)
        if todo:
            from pxt_assets.io_managers import MediaIOManager

            reader = MediaIOManager().reader()
            for batch in todo:
                fill_frame_attrs(self, store, reader, batch)

    def _argument_error(self) -> str | None:
        """The message of a row whose base row the iterator's arguments cannot work on (IteratorArgumentError:
        `audio_splitter(max_size=1024)` on audio whose packets are larger), if any."""
        pos = self.pos
        messages = self.where(pos.errortype == "invalid").select(msg=pos.errormsg).limit(1).collect()
        found = list(messages["msg"])
        return found[0].removeprefix("pos: ") if found else None

    # -- catalog -------------------------------------------------------------------------------------------
    def _doc(self) -> dict[str, Any]:
        return {**super()._doc(), "view": {"base": self.base_spec.to_dict(), "iterator": self.iterator.to_dict(),
                                           "destination": self.iterator_destination,
                                           "base_columns": list(self.base_columns)}}

    def _load_parts(self, doc: dict[str, Any]) -> None:
        _, self.base_spec, self.iterator = view_parts(doc)
        self.iterator_destination = doc["view"].get("destination")
        self.base_columns = list(doc["view"].get("base_columns", []))  # none in a view made before they were

    def _made_by(self, name: str) -> str:
        if name in self.base_columns:
            return f"(from {self.base_path!r})"
        made = iterator_of(self.iterator).outputs(
            **{k: v for k, v in iterator_kwargs(self.iterator).items() if k in ("elements", "metadata")})
        return "(iterator)" if name == "pos" or name in made else "(plain)"

    def __repr__(self) -> str:
        return super().__repr__().replace("MediaTable", "MediaView", 1) + f"\n  (view of {self.base_path!r}: {self.iterator!r})"


def _resolve_output(name: str, col_type: Any, iterator: Call, destination: str | None,
                    settings: Settings) -> destinations.Resolved:
    """Where an iterator's media go: the view's destination, else output_media_dest, else the local default.
    Frames are the exception, as in Pixeltable: without a destination they are not written (re-extracted
    from the video by seeking when read)."""
    if not col_type.is_media:
        return destinations.Resolved(None, "not media")
    if iterator.fn == "video.frame_iterator" and destination is None and not settings.output_media_dest:
        return destinations.Resolved(None, "not stored (re-extracted from the video when read)")
    return destinations.resolve(name, computed=True, is_media=True, explicit=destination, settings=settings)


__all__ = ["MediaView"]
