"""Object stores, chosen from a registry by a URI's scheme (and, for https, its host).

Adding a provider is one new module and one line in each table below. Provider modules are imported on
first use, so an SDK is loaded only when a URI needs it.
"""

from __future__ import annotations

import importlib
import os
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
    "check_destination",
    "system_folder",
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


# ---------------------------------------------------------------------------------------------------------
# what can be a destination at all (before any store is asked)

#: system trees: neither they nor any folder below them is a destination, whoever runs the pipeline (root too)
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/boot", "/proc", "/sys", "/dev", "/lib", "/lib32", "/lib64",
                "/libx32", "/private/etc", "/System")
#: system folders that are refused themselves, while folders below them may be used (/var/tmp, /var/data)
SYSTEM_FOLDERS = ("/", "/var", "/private", "/private/var")


def system_folder(path: str | os.PathLike) -> str | None:
    """The system folder or tree `path` is (or is inside), checked on both its absolute spelling and its real
    path (so a symlink to /etc is /etc), or None."""
    if os.name == "nt":  # pragma: no cover - Windows: the Windows folder and the Program Files trees
        real = os.path.realpath(path).lower()
        roots = [os.environ.get(v, "") for v in ("SystemRoot", "ProgramFiles", "ProgramFiles(x86)")]
        for root in filter(None, roots):
            root = os.path.realpath(root).lower()
            if real == root or real.startswith(root.rstrip("\\") + "\\"):
                return root
        return None
    for spelling in dict.fromkeys((os.path.normpath(os.path.abspath(path)), os.path.realpath(path))):
        if spelling in SYSTEM_FOLDERS:
            return spelling
        for tree in SYSTEM_TREES:
            if spelling == tree or spelling.startswith(tree + "/"):
                return tree
    return None


def check_destination(uri: str) -> None:
    """Raise StoreError (kind 'invalid') if `uri` cannot be a destination whatever the store says: empty; a
    local path or file:// URL with a query string or fragment (it would be dropped, or become part of a
    folder name) or in a system folder (/, /etc, /usr, ...: see SYSTEM_TREES); a bucket prefix with `.` or
    `..` segments (stored as literal keys by some providers, resolved by others)."""
    if not isinstance(uri, str) or not uri.strip():
        raise StoreError(f"a destination cannot be empty (got {uri!r})", kind="invalid")
    provider = provider_of(uri)
    if provider == "local":
        if "?" in uri or "#" in uri:
            raise StoreError(f"a local destination takes no query string or fragment ('?...', '#...'): {uri!r}",
                             kind="invalid")
        path = path_of(uri)
        if path.is_absolute():
            system = system_folder(path)
            if system is not None:
                where = "a system folder" if system == str(path) else f"inside the system folder {system}"
                raise StoreError(f"{str(path)!r} is {where} and cannot be a destination, whoever runs the "
                                 "pipeline; use a folder of your own (under your home, /tmp, /data, ...)",
                                 kind="invalid")
        return
    if provider in ("s3", "gcs", "azure", "pxt"):
        for segment in urllib.parse.urlparse(uri).path.split("/"):
            if segment in (".", "..") or urllib.parse.unquote(segment) in (".", ".."):
                raise StoreError(f"a bucket prefix cannot have {segment!r} segments: {uri!r}; write the prefix "
                                 "without them", kind="invalid")
