"""http(s):// media: read only, downloaded through the file cache."""

from __future__ import annotations

import pathlib
import shutil
import urllib.error
import urllib.request

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from pxt_assets.stores.base import ObjectStore, StoreError

_TIMEOUT_S = 60
_CHUNK = 1 << 20


def _is_transient(exc: BaseException) -> bool:
    # Throttling and server errors are worth another try; a 404 or 403 is not.
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError))


class HttpStore(ObjectStore):
    provider = "http"
    writable = False
    remote = True

    @retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    def _fetch(self, uri: str, dest: pathlib.Path) -> None:
        # The URL is requested exactly as stored, query string included (presigned URLs need it).
        req = urllib.request.Request(uri, headers={"User-Agent": "pxt_assets"})
        with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)

    def presign(self, uri: str, expiration_seconds: int) -> str:
        return uri  # already an HTTP URL: nothing to sign

    def download(self, uri: str, dest: pathlib.Path) -> None:
        try:
            self._fetch(uri, dest)
        except urllib.error.HTTPError as e:
            kind = {404: "not_found", 403: "access_denied", 401: "access_denied"}.get(e.code, "http_error")
            raise StoreError(f"HTTP {e.code} {e.reason} fetching {uri}", kind=kind) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise StoreError(f"cannot fetch {uri}: {reason}", kind="unreachable") from None
