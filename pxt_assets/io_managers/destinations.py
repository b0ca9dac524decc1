"""Destination precedence: the one place that decides where a column's files go.

1. the column's `destination=` (computed columns only),
2. `output_media_dest` for computed columns, `input_media_dest` for source columns,
3. `$PIXELTABLE_HOME/media` for computed columns; source media with no input_media_dest stay where they are.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from pxt_assets import fsutil, stores
from pxt_assets.config import Settings
from pxt_assets.spec import SpecError


class DestinationError(SpecError):
    """A destination that cannot be used; names the column and the destination."""

    def __init__(self, message: str, *, kind: str = "invalid_destination") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Resolved:
    uri: str | None  # None: source media referenced in place
    rule: str  # "column destination", "output_media_dest (<source>)", "default", "referenced in place"


def _normalize(uri: str, column: str) -> str:
    try:
        if stores.provider_of(uri) == "pxt":
            return stores.normalize_uri(uri)  # a legacy pxtfs:// destination is kept in the pxt:// form
        if stores.provider_of(uri) == "local":
            path = stores.path_of(uri)
            # A relative path would mean different places for different working directories (Pixeltable
            # validates it, then fails at write time): make it absolute now, once.
            return stores.file_url(path if path.is_absolute() else pathlib.Path.cwd() / path)
    except stores.UnsupportedURIError as e:
        raise DestinationError(f"Column {column!r}: `destination` {uri!r} is not supported: {e}") from None
    return uri


def validate(uri: str, column: str) -> None:
    """Fail now, naming the column and the destination, if files cannot be written at `uri`."""
    try:
        store = stores.store_for(uri)
    except stores.UnsupportedURIError as e:
        raise DestinationError(f"Column {column!r}: destination {uri!r}: {e}") from None
    if not store.writable:
        raise DestinationError(
            f"Column {column!r}: destination {uri!r} is a read-only {store.provider} location; "
            "supported destinations: " + "; ".join(f for f in stores.SUPPORTED_FORMS if "source media only" not in f)
        )
    from pxt_assets.stores import retry

    try:
        retry.within_cap(lambda: store.validate_destination(uri), f"cannot use {uri}")
    except stores.StoreError as e:
        raise DestinationError(f"Column {column!r}: destination {uri!r}: {e}", kind=e.kind) from None


def resolve(column: str, *, computed: bool, is_media: bool, explicit: str | None, settings: Settings) -> Resolved:
    """Apply the precedence rules for one column and validate the result."""
    if explicit is not None:
        if not computed:
            raise DestinationError(
                f"Column {column!r}: `destination` applies only to computed columns; "
                "for inserted media set input_media_dest"
            )
        if not is_media:
            raise DestinationError(f"Column {column!r}: `destination` applies only to media columns")
    if not is_media:
        return Resolved(None, "not media")
    if explicit is not None and str(explicit).strip():
        uri, rule = _normalize(str(explicit).strip(), column), "column destination"
    else:
        key = "output_media_dest" if computed else "input_media_dest"
        configured = getattr(settings, key)
        if configured:
            uri, rule = _normalize(configured, column), f"{key} ({settings.sources.get(key, 'config')})"
        elif computed:
            fsutil.make_dirs(settings.media_dir)
            uri, rule = stores.file_url(settings.media_dir), "default ($PIXELTABLE_HOME/media)"
        else:
            return Resolved(None, "referenced in place")
    validate(uri, column)
    return Resolved(uri, rule)
