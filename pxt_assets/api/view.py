"""Views: tables whose rows an iterator makes from a base table's rows (frames of videos, segments of audio,
chunks of documents), as Pixeltable's `create_view(path, base, iterator=...)`.

A view is a table: its own asset group, its own rows, computed columns (built-in or UDF) with
`destination=`, queries, lifecycle. Its batches are its base table's batches (the same dynamic partitions):
a new video adds only its frames. The iterator's output columns form the view's source step, which depends
on the base column it reads, so lineage runs from the base column through the view.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from pxt_assets import assets as asset_builder
from pxt_assets.api.table import MediaTable
from pxt_assets.config import Settings
from pxt_assets.functions import registry
from pxt_assets.io_managers import destinations
from pxt_assets.media import Int
from pxt_assets.spec import Call, ColumnRef, ColumnSpec, Literal, SpecError, TableSpec, expr_from_dict, parse_table_path


def iterator_of(call: Any) -> registry.IteratorSpec:
    if not isinstance(call, Call) or call.udf is not None:
        raise SpecError(f"iterator: expected frame_iterator(...), audio_splitter(...) or document_splitter(...), "
                        f"got {call!r}")
    spec = registry.get(call.fn).iterator
    if spec is None:
        raise SpecError(f"iterator: {call.fn} is not an iterator (frame_iterator, audio_splitter, document_splitter)")
    return spec


def iterator_kwargs(call: Call) -> dict[str, Any]:
    """The iterator's constant arguments (every argument but the media it iterates over)."""
    out: dict[str, Any] = {}
    names = {"video.frame_iterator": (), "audio.audio_splitter": (), "document.document_splitter": ("separators",)}
    for name, arg in zip(names.get(call.fn, ()), call.args[1:]):
        out[name] = arg
    out.update(call.kwargs)
    values = {}
    for name, arg in out.items():
        if not isinstance(arg, Literal):
            raise SpecError(f"{call!r}: {name!r} must be a constant, not {arg!r}")
        values[name] = list(arg.value) if isinstance(arg.value, tuple) else arg.value
    return values


def check_iterator_call(call: Any, columns: dict[str, ColumnSpec], where: str) -> tuple[registry.IteratorSpec, str]:
    """The iterator and the column it reads; errors name `where` (the view or column being defined)."""
    spec = iterator_of(call)
    if not call.args or not isinstance(call.args[0], ColumnRef) or call.args[0].name not in columns:
        raise SpecError(f"{where}: {call!r} must iterate over a column of the base table")
    source = columns[call.args[0].name]
    if source.col_type != spec.input_type:
        raise SpecError(f"{where}: {call.fn} reads a {spec.input_type!r} column; {source.name!r} is "
                        f"{source.col_type!r}")
    iterator_kwargs(call)
    return spec, source.name


class MediaView(MediaTable):
    """A view: `pxt.create_view('dir/frames', videos, iterator=frame_iterator(videos.video, fps=1))`."""

    def __init__(self, path: str, base: MediaTable, iterator: Call, *, destination: str | None = None,
                 settings: Settings | None = None, automation: bool = True) -> None:
        self._settings = settings
        self.automation = automation
        self._watch = None
        self._persistent = False
        self._defs = None
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
        self.spec.columns["pos"] = ColumnSpec("pos", Int, None, None, None, "iterator position")
        for name, col_type in outputs.items():
            resolved = _resolve_output(name, col_type, iterator, destination, self.settings)
            self.spec.columns[name] = ColumnSpec(name, col_type, None, destination if col_type.is_media else None,
                                                 resolved.uri, resolved.rule)

    # -- what makes it a view ------------------------------------------------------------------------------
    @property
    def base_path(self) -> str:
        return self.base_spec.display_path

    def iterator_columns(self) -> list[ColumnSpec]:
        """`pos` and the iterator's outputs: the view's source step makes them."""
        return self.spec.source_columns()

    def add_column(self, **kwargs: Any) -> None:
        raise SpecError(f"view {self.path!r}: its rows come from its iterator; add computed columns instead")

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
        import time

        from pxt_assets import rowstore

        if instance is None:
            from pxt_assets.instance import get_instance

            instance = get_instance()
        for batch in self._rowstore().batches(self.base_spec.slug, rowstore.COMMITTED):
            self._run_batch(batch, instance, time.monotonic(), doing="computing view")
        return self.count()

    # -- catalog -------------------------------------------------------------------------------------------
    def _doc(self) -> dict[str, Any]:
        return {**super()._doc(), "view": {"base": self.base_spec.to_dict(), "iterator": self.iterator.to_dict(),
                                           "destination": self.iterator_destination}}

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> MediaView:
        view = cls.__new__(cls)
        view._settings = None
        view.automation = bool(doc.get("automation", True))
        view._watch = None
        view._defs = None
        view._persistent = True
        view.spec = TableSpec.from_dict(doc)
        info = doc["view"]
        view.base_spec = TableSpec.from_dict(info["base"])
        view.iterator = expr_from_dict(info["iterator"], {n: c.col_type for n, c in view.base_spec.columns.items()})
        view.iterator_destination = info.get("destination")
        return view

    def __repr__(self) -> str:
        return super().__repr__().replace("MediaTable", "MediaView", 1) + f"\n  (view of {self.base_path!r}: {self.iterator!r})"


def _resolve_output(name: str, col_type: Any, iterator: Call, destination: str | None,
                    settings: Settings) -> destinations.Resolved:
    """Where an iterator's media go: the view's destination, else output_media_dest, else the local default.
    Frames are the exception, as in Pixeltable: without a destination they are not written (re-extracted
    from the video by seeking when read)."""
    if not col_type.is_media:
        return destinations.Resolved(None, "not media")
    if iterator.fn == "video.frame_iterator" and not destination and not settings.output_media_dest:
        return destinations.Resolved(None, "not stored (re-extracted from the video when read)")
    return destinations.resolve(name, computed=True, is_media=True, explicit=destination, settings=settings)


__all__ = ["MediaView", "check_iterator_call", "iterator_kwargs", "iterator_of"]
