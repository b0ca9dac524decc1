"""Destination precedence: the one place that decides where a column's files go.

1. the column's `destination=` (computed columns only),
2. `output_media_dest` for computed columns, `input_media_dest` for source columns,
3. `$PIXELTABLE_HOME/media` for computed columns; source media with no input_media_dest stay where they are.

Destinations are contained (see docs/reliability.md, "Contained destinations"): an empty destination, a local
one with a query string or fragment or in a system folder (/, /etc, /usr, ..., for root too), and a bucket
prefix with `.` or `..` segments are refused here, naming the column; a local destination is recorded as its
real path (resolved once, here), and the column's writer never follows a symlink out of it.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

from pxt_assets import fsutil, stores
from pxt_assets.config import Settings
from pxt_assets.redaction import redact
from pxt_assets.spec import SpecError


class DestinationError(SpecError):
    """A destination that cannot be used; names the column and the destination."""

    def __init__(self, message: str, *, kind: str = "invalid_destination") -> None:
        super().__init__(redact(message))  # a destination URI may carry a credential
        self.kind = kind


@dataclass(frozen=True)
class Resolved:
    uri: str | None  # None: source media referenced in place
    rule: str  # "column destination", "output_media_dest (<source>)", "default", "referenced in place"


def _normalize(uri: str, column: str) -> str:
    try:
        _check(uri, column)
        if stores.provider_of(uri) == "pxt":
            return stores.normalize_uri(uri)  # a legacy pxtfs:// destination is kept in the pxt:// form
        if stores.provider_of(uri) == "local":
            path = stores.path_of(uri)
            # A relative path would mean different places for different working directories (Pixeltable
            # validates it, then fails at write time): make it absolute now, once. And its real path: a
            # symlink on the way is followed once, here, and never again when files are written below it.
            real = stores.file_url(os.path.realpath(path if path.is_absolute() else pathlib.Path.cwd() / path))
            _check(real, column)
            return real
    except stores.UnsupportedURIError as e:
        raise DestinationError(f"Column {column!r}: `destination` {uri!r} is not supported: {e}") from None
    except stores.StoreError as e:  # a file:// URL naming another host
        raise DestinationError(f"Column {column!r}: destination {uri!r}: {e}", kind=e.kind) from None
    return uri


def _check(uri: str, column: str) -> None:
    """What no destination may be, whatever its store says (see stores.check_destination)."""
    try:
        stores.check_destination(uri)
    except stores.UnsupportedURIError:
        raise
    except stores.StoreError as e:  # kind: invalid_destination
        raise DestinationError(f"Column {column!r}: destination {uri!r}: {e}") from None


def validate(uri: str, column: str) -> None:
    """Fail now, naming the column and the destination, if files cannot be written at `uri`."""
    try:
        _check(uri, column)  # again at run time: a destination recorded before these checks, or since replaced
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
    if explicit is not None and not str(explicit).strip():
        # not the default in disguise: an empty value is a mistake (an unset variable in a template, ...)
        raise DestinationError(f"Column {column!r}: `destination` is empty ({explicit!r}); give a folder or a "
                               "bucket prefix, or leave it out (None) for output_media_dest or the default")
    if explicit is not None:
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
