"""http(s):// media: read only, downloaded through the file cache."""

from __future__ import annotations

import http.client
import pathlib
import shutil
import socket
import urllib.error
import urllib.request

from pxt_assets.stores import retry
from pxt_assets.stores.base import ObjectStore, StoreError

_TIMEOUT_S = 60
_CHUNK = 1 << 20


def _fetch(uri: str, dest: pathlib.Path) -> None:
    """One GET of `uri` into `dest`, its failures as StoreErrors with a stable code."""
    # The URL is requested exactly as stored, query string included (presigned URLs need it); messages
    # name it redacted (StoreError does that).
    req = urllib.request.Request(uri, headers={"User-Agent": "pxt_assets"})
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)
    except urllib.error.HTTPError as e:
        kind = ({404: "not_found", 410: "not_found", 403: "access_denied", 401: "access_denied"}.get(e.code)
                or retry.code_for_status(e.code) or "http_error")
        raise StoreError(f"HTTP {e.code} {e.reason} fetching {uri}", kind=kind,
                         retry_after=retry.retry_after_s(e.headers)) from None
    except (TimeoutError, socket.timeout) as e:
        raise StoreError(f"timed out fetching {uri}: {e}", kind="timeout") from None
    except urllib.error.URLError as e:
        reason = e.reason
        kind = "timeout" if isinstance(reason, (TimeoutError, socket.timeout)) else "unreachable"
        raise StoreError(f"cannot fetch {uri}: {reason}", kind=kind) from None
    except (ConnectionError, http.client.HTTPException) as e:  # reset, or a body cut off mid-way
        raise StoreError(f"cannot fetch {uri}: {type(e).__name__}: {e}", kind="unreachable") from None


class HttpStore(ObjectStore):
    provider = "http"
    writable = False
    remote = True

    def presign(self, uri: str, expiration_seconds: int) -> str:
        return uri  # already an HTTP URL: nothing to sign

    def download(self, uri: str, dest: pathlib.Path) -> None:
        retry.call(lambda: _fetch(uri, dest))
