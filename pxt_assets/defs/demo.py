"""The seeds' demo table (seed 001): `blob_storage_demo/media`.

flipped has no destination, so it lands in output_media_dest or `$PIXELTABLE_HOME/media`; rotated and
thumbnail go to explicit destinations. Locally (the default) those are folders under
`$PIXELTABLE_HOME/demo_outputs` (the seed uses ~/Desktop/pixeltable_outputs; `$PXT_DEMO_OUTPUTS` moves them).
With `$PXT_DEMO_DEST` set to a bucket prefix (`s3://bucket/demo/`, `gs://...`, `wasbs://...`, R2/B2/Tigris
https forms) they go to `<dest>rotated/` and `<dest>thumbnails/`, and a `serving_url` column holds presigned
URLs of the thumbnails, as in the seed's presigned URL section. With `$PXT_DEMO_WATCH` set to a prefix, the
sensor `blob_storage_demo__media_sensor` turns new images there into rows (every
`$PXT_DEMO_WATCH_INTERVAL` seconds, default 30).
"""

from __future__ import annotations

import os
import pathlib

import pxt_assets as pxt
from pxt_assets.functions import net


def outputs_dir() -> pathlib.Path:
    base = os.environ.get("PXT_DEMO_OUTPUTS")
    return pathlib.Path(base).expanduser() if base else pxt.load_settings().home / "demo_outputs"


def cloud_dest() -> str | None:
    dest = os.environ.get("PXT_DEMO_DEST", "").strip()
    return (dest.rstrip("/") + "/") if dest else None


def build_media_table() -> pxt.MediaTable:
    """The seed's table, step by step: source image, flipped (default destination), rotated and thumbnail
    (explicit destinations), width and height; plus serving_url when the destinations are in the cloud."""
    cloud = cloud_dest()
    if cloud:
        dest_rotated, dest_thumbnails = cloud + "rotated/", cloud + "thumbnails/"
    else:
        base = outputs_dir()
        # As in the seed, local destination folders are created by the user before they are used.
        for sub in ("rotated", "thumbnails"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        dest_rotated, dest_thumbnails = str(base / "rotated"), str(base / "thumbnails")

    media = pxt.MediaTable("blob_storage_demo/media", {"source_image": pxt.Image})
    media.add_computed_column(flipped=media.source_image.transpose(0))
    media.add_computed_column(rotated=media.source_image.rotate(90), destination=dest_rotated)
    media.add_computed_column(thumbnail=media.source_image.thumbnail((128, 128)), destination=dest_thumbnails)
    media.add_computed_column(width=media.source_image.width)
    media.add_computed_column(height=media.source_image.height)
    if cloud:
        media.add_computed_column(serving_url=net.presigned_url(media.thumbnail.fileurl, 3600))
    watched = os.environ.get("PXT_DEMO_WATCH", "").strip()
    if watched:  # e.g. s3://bucket/incoming/ or a local folder: new images become rows on their own
        media.watch(watched, minimum_interval_seconds=int(os.environ.get("PXT_DEMO_WATCH_INTERVAL", "30")),
                    max_batch_rows=int(os.environ.get("PXT_DEMO_WATCH_BATCH_ROWS", "1000")))
    return media


media = build_media_table()
