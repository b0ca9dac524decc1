"""Network-facing functions: presigned URLs for serving stored media over HTTP.

    from pxt_assets.functions import net
    t.select(url=net.presigned_url(t.thumbnail.fileurl, 3600)).collect()
    t.add_computed_column(serving_url=net.presigned_url(t.video.fileurl, 86400))
"""

from __future__ import annotations

from typing import Any

from pxt_assets import stores
from pxt_assets.functions.registry import ExpressionFunction, is_expression, register
from pxt_assets.media import FRAME_REF_RE, String
from pxt_assets.stores.base import check_expiration


def _frame_parts(uri: str) -> tuple[str, str]:
    """(the file to sign, what follows its URL): a frame not written is its video's URL at that time (a
    media fragment)."""
    frame = FRAME_REF_RE.match(uri) if "#t=" in uri else None
    return (frame["video"], f"#t={frame['t']}") if frame is not None else (uri, "")


def _presigned_urls(calls: list[tuple[list[Any], dict[str, Any]]]) -> list[Any]:
    """Many rows' URLs at once: each store signs its URIs together (the home bucket's control plane takes
    100 keys a request; the others sign locally, one by one)."""
    out: list[Any] = [None] * len(calls)
    groups: dict[tuple[int, Any], tuple[stores.ObjectStore, list[tuple[int, str, str]]]] = {}
    for i, (args, kwargs) in enumerate(calls):
        try:
            uri, expiration = _bind(*args, **kwargs)
            if uri is None:
                continue
            target, fragment = _frame_parts(uri)
            store = stores.store_for(target)
            groups.setdefault((id(store), expiration), (store, []))[1].append((i, target, fragment))
        except Exception as e:  # noqa: BLE001 - that row's error
            out[i] = e
    for (_, expiration), (store, items) in groups.items():
        try:
            signed = store.presign_many([target for _, target, _ in items], expiration)
        except Exception as e:  # noqa: BLE001 - every row of this group fails with it
            signed = [e] * len(items)
        for (i, _, fragment), url in zip(items, signed):
            out[i] = url if isinstance(url, BaseException) else url + fragment
    return out


def _bind(uri: str | None, expiration_seconds: int) -> tuple[str | None, int]:
    return uri, expiration_seconds


@register("net.presigned_url", applies_to=None, returns=String, batch=_presigned_urls)
def _presigned_url(uri: str | None, expiration_seconds: int) -> str | None:
    got = _presigned_urls([([uri, expiration_seconds], {})])[0]
    if isinstance(got, BaseException):
        raise got
    return got


def _check_presigned_url_args(url, expiration_seconds) -> None:
    if not is_expression(expiration_seconds):
        try:
            check_expiration(expiration_seconds)
        except stores.StoreError as e:
            raise ValueError(f"presigned_url: {e}") from None
    if not is_expression(url) and not isinstance(url, str):
        raise TypeError(f"presigned_url: expected a URL expression such as t.col.fileurl, got {url!r}")


presigned_url = ExpressionFunction(
    "net.presigned_url", _check_presigned_url_args,
    """presigned_url(url, expiration_seconds): a time-limited HTTP(S) URL for a stored file: SigV4 for S3, R2,
    B2 and Tigris; the control plane's URL for the home bucket; a V4 signed URL for GCS; a read-only SAS for Azure. http(s) URLs pass through unchanged;
    local files raise an error.

    `expiration_seconds` must be between 1 and 604800 (7 days). Signing is local (no network call per row),
    except for Pixeltable Cloud's home bucket (pxt://), whose control plane signs 100 files a request.
    """,
)


__all__ = ["presigned_url"]


