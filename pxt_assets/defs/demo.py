"""The seeds' demo table (seed 001): `blob_storage_demo/media`.

flipped has no destination, so it lands in `$PIXELTABLE_HOME/media`; rotated and thumbnail go to explicit
local folders (the seed uses ~/Desktop/pixeltable_outputs; here `$PIXELTABLE_HOME/demo_outputs`, or
`$PXT_DEMO_OUTPUTS`). Any of them could be a bucket URI instead.
"""

from __future__ import annotations

import os
import pathlib

import pxt_assets as pxt


def outputs_dir() -> pathlib.Path:
    base = os.environ.get("PXT_DEMO_OUTPUTS")
    return pathlib.Path(base).expanduser() if base else pxt.load_settings().home / "demo_outputs"


def build_media_table() -> pxt.MediaTable:
    """The seed's table, step by step: source image, flipped (default destination), rotated and thumbnail
    (explicit local destinations), width and height."""
    base = outputs_dir()
    dest_rotated = base / "rotated"
    dest_thumbnails = base / "thumbnails"
    # As in the seed, local destination folders are created by the user before they are used.
    dest_rotated.mkdir(parents=True, exist_ok=True)
    dest_thumbnails.mkdir(parents=True, exist_ok=True)

    media = pxt.MediaTable("blob_storage_demo/media", {"source_image": pxt.Image})
    media.add_computed_column(flipped=media.source_image.transpose(0))
    media.add_computed_column(rotated=media.source_image.rotate(90), destination=str(dest_rotated))
    media.add_computed_column(
        thumbnail=media.source_image.thumbnail((128, 128)), destination=str(dest_thumbnails)
    )
    media.add_computed_column(width=media.source_image.width)
    media.add_computed_column(height=media.source_image.height)
    return media


media = build_media_table()
