"""Network-facing functions: presigned URLs for serving stored media over HTTP.

    from pxt_assets.functions import net
    t.select(url=net.presigned_url(t.thumbnail.fileurl, 3600)).collect()
    t.add_computed_column(serving_url=net.presigned_url(t.video.fileurl, 86400))
"""

from __future__ import annotations


from pxt_assets import stores
from pxt_assets.functions.registry import ExpressionFunction, is_expression, register
from pxt_assets.media import FRAME_REF_RE, String
from pxt_assets.stores.base import check_expiration


@register("net.presigned_url", applies_to=None, returns=String)
def _presigned_url(uri: str | None, expiration_seconds: int) -> str | None:
    if uri is None:
        return None
    frame = FRAME_REF_RE.match(uri) if "#t=" in uri else None
    if frame is not None:  # a frame not written: the video's URL, at that time (a media fragment)
        return stores.store_for(frame["video"]).presign(frame["video"], expiration_seconds) + f"#t={frame['t']}"
    return stores.store_for(uri).presign(uri, expiration_seconds)



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
    B2 and Tigris; a V4 signed URL for GCS; a read-only SAS for Azure. http(s) URLs pass through unchanged;
    local files raise an error.

    `expiration_seconds` must be between 1 and 604800 (7 days). Signing is local: no network call per row.
    """,
)


__all__ = ["presigned_url"]


