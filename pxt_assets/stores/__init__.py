"""Object stores, chosen from a registry by a URI's scheme (and, for https, its host).

Adding a provider is one new module and one line in each table below. Provider modules are imported on
first use, so an SDK is loaded only when a URI needs it.
"""

from __future__ import annotations

import importlib
import pathlib
import re
import threading
import urllib.parse

from pxt_assets.stores.base import (
    ObjectStore,
    SignedExpiry,
    StoreError,
    UnsupportedURIError,
    content_type_for,
    signed_url_expiry,
)
from pxt_assets.stores.local import file_url, path_of

__all__ = [
    "ObjectStore",
    "SignedExpiry",
    "StoreError",
    "UnsupportedURIError",
    "content_type_for",
    "signed_url_expiry",
    "file_url",
    "path_of",
    "provider_of",
    "store_for",
    "canonical_uri",
    "normalize_uri",
    "SUPPORTED_FORMS",
]

#: What users may write, shown in every "unsupported" message.
SUPPORTED_FORMS = (
    "pxt://<org>:<db>/buckets/home/prefix/ (Pixeltable Cloud's home bucket)",
    "a local path or file:///path",
    "s3://bucket/prefix/",
    "gs://bucket/prefix/",
    "wasbs://container@account.blob.core.windows.net/prefix/",
    "abfss://container@account.dfs.core.windows.net/prefix/",
    "https://account.blob.core.windows.net/container/prefix/",
    "https://<account-id>.r2.cloudflarestorage.com/bucket/prefix/ (Cloudflare R2)",
    "https://s3.<region>.backblazeb2.com/bucket/prefix/ (Backblaze B2)",
    "https://fly.storage.tigris.dev/bucket/prefix/ or https://t3.storage.dev/bucket/prefix/ (Tigris)",
    "http(s)://host/path (source media only)",
)

# scheme -> provider
_SCHEMES = {
    "file": "local",
    "http": "http",
    "https": "http",
    "s3": "s3",
    "gs": "gcs",
    "wasb": "azure",
    "wasbs": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "pxt": "pxt",
    "pxtfs": "pxt",  # the legacy spelling, stored as pxt://
}
# https hosts of object stores (anything else over https is a plain, read-only web URL)
_HTTPS_HOSTS = (
    (re.compile(r"^[a-z0-9-]+\.r2\.cloudflarestorage\.com$"), "s3"),
    (re.compile(r"^s3\.[a-z0-9-]+\.backblazeb2\.com$"), "s3"),
    (re.compile(r"^(fly\.storage\.tigris\.dev|t3\.storage\.dev)$"), "s3"),
    (re.compile(r"^[a-z0-9]+\.blob\.core\.windows\.net$"), "azure"),
)
# provider -> "module:Class"
_FACTORIES = {
    "local": "pxt_assets.stores.local:LocalStore",
    "http": "pxt_assets.stores.http:HttpStore",
    "s3": "pxt_assets.stores.s3:S3Store",
    "gcs": "pxt_assets.stores.gcs:GcsStore",
    "azure": "pxt_assets.stores.azure:AzureStore",
    "pxt": "pxt_assets.stores.pxt:PxtStore",
}

_INSTANCES: dict[str, ObjectStore] = {}
_LOCK = threading.Lock()


def _unsupported(uri: str, why: str) -> UnsupportedURIError:
    return UnsupportedURIError(f"unsupported URI {uri!r}: {why}; supported: " + "; ".join(SUPPORTED_FORMS))


def provider_of(uri: str) -> str:
    """The provider handling `uri`: 'local', 'http', 's3' (with R2, B2, Tigris), 'gcs' or 'azure'."""
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):  # plain path (or a Windows drive)
        return "local"
    provider = _SCHEMES.get(scheme)
    if provider is None:
        raise _unsupported(uri, f"scheme {scheme + '://'!r} is not supported")
    if provider == "http" and scheme == "https":
        host = (parsed.hostname or "").lower()
        for pattern, name in _HTTPS_HOSTS:
            if pattern.match(host):
                return name
    return provider


def store_for(uri: str) -> ObjectStore:
    """The store that reads and writes `uri`: one object per provider per process, shared by all threads."""
    provider = provider_of(uri)
    with _LOCK:
        store = _INSTANCES.get(provider)
        if store is None:
            module, cls = _FACTORIES[provider].split(":")
            try:
                factory = getattr(importlib.import_module(module), cls)
            except ImportError as e:
                raise StoreError(f"{provider} support is not installed ({e}); needed for {uri!r}",
                                 kind="missing_provider") from e
            store = _INSTANCES[provider] = factory()
    return store



def canonical_uri(uri: str) -> str:
    """The canonical form of `uri` (see ObjectStore.canonical); a URI no store can take apart is its own."""
    try:
        return store_for(uri).canonical(uri)
    except StoreError:
        return uri


def normalize_uri(uri: str, *, base: pathlib.Path | None = None) -> str:
    """A URI as stored: local paths become absolute file:// URLs; a legacy pxtfs:// URI its pxt:// form;
    other remote URLs are kept exactly as given."""
    provider = provider_of(uri)
    if provider == "pxt":
        from pxt_assets.stores.pxt import logical_uri

        return logical_uri(uri)
    if provider == "local":
        path = path_of(uri)
        if not path.is_absolute():
            path = (base or pathlib.Path.cwd()) / path
        return file_url(path)
    return uri
