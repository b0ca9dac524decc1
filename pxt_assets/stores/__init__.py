"""Object stores, chosen by a URI's scheme (and, for https, its host) from a registry.

Adding a provider is one new module and one registry entry. Cloud providers (S3 family, GCS, Azure) are
registered by their own modules.
"""

from __future__ import annotations

import pathlib
import threading
import urllib.parse
from collections.abc import Callable

from pxt_assets.stores.base import ObjectStore, StoreError, UnsupportedURIError, content_type_for
from pxt_assets.stores.http import HttpStore
from pxt_assets.stores.local import LocalStore, file_url, path_of

__all__ = [
    "ObjectStore",
    "StoreError",
    "UnsupportedURIError",
    "content_type_for",
    "file_url",
    "path_of",
    "provider_of",
    "store_for",
    "normalize_uri",
    "SUPPORTED_FORMS",
]

#: What users may write, shown in every "unsupported" message.
SUPPORTED_FORMS = (
    "a local path or file:///path",
    "http(s)://host/path (source media only)",
)

# scheme -> factory; one store object per provider per process, shared by all threads
_FACTORIES: dict[str, Callable[[], ObjectStore]] = {
    "file": LocalStore,
    "http": HttpStore,
    "https": HttpStore,
}
_INSTANCES: dict[str, ObjectStore] = {}
_LOCK = threading.Lock()


def provider_of(uri: str) -> str:
    """The registry key handling `uri`: 'file' for plain paths and file://, else the scheme."""
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return "file"
    if scheme not in _FACTORIES:
        raise UnsupportedURIError(
            f"unsupported URI {uri!r}: scheme {scheme + '://'!r} is not supported; use "
            + "; ".join(SUPPORTED_FORMS)
        )
    return scheme


def store_for(uri: str) -> ObjectStore:
    """The (shared) store that reads and writes `uri`."""
    key = provider_of(uri)
    with _LOCK:
        store = _INSTANCES.get(key)
        if store is None:
            store = _INSTANCES[key] = _FACTORIES[key]()
    return store


def normalize_uri(uri: str, *, base: pathlib.Path | None = None) -> str:
    """A URI as stored: local paths become absolute file:// URLs; remote URLs are kept exactly as given."""
    if provider_of(uri) == "file":
        path = path_of(uri)
        if not path.is_absolute():
            path = (base or pathlib.Path.cwd()) / path
        return file_url(path)
    return uri
