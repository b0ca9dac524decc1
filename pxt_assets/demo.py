"""The seed walkthrough (seed 001, "Working with Blob Storage"), step by step, on the embedded default.

Runs the demo table's insert job on the Dagster instance under $DAGSTER_HOME, so every step shows in the UI.
Sample images ship with the package: no network is used.
"""

from __future__ import annotations

import pathlib
import time

import pandas as pd

from pxt_assets import console
from pxt_assets.assets import insert_job_name
from pxt_assets.instance import get_instance

SAMPLES = sorted(str(p) for p in (pathlib.Path(__file__).parent / "sample_data").glob("*.jpg"))


def _show(title: str, result) -> None:
    frame = result.to_pandas()  # a ResultSet
    print(f"\n>>> {title}")
    with pd.option_context("display.max_colwidth", None, "display.width", 10_000, "display.max_columns", None):
        print(frame.to_string())


def run() -> None:
    from pxt_assets.definitions import code_table

    media = code_table("blob_storage_demo/media")  # declared in pxt_assets/defs/demo/defs.yaml

    started = time.monotonic()
    instance = get_instance()
    print(f"Dagster instance: {instance.root_directory}")
    # Clean slate, as the seed's drop_dir: delete earlier batches and the files written for them.
    for batch in media.batches():
        try:
            media.delete(batch=batch, instance=instance)
        except Exception as e:  # noqa: BLE001 - e.g. an emulator bucket of an earlier run is gone
            print(f"(could not delete earlier batch {batch}: {e})")

    print(f"\n>>> the table and where each column's files go\n{media!r}")

    print(f"\n>>> insert {len(SAMPLES)} sample images through job {insert_job_name(media.spec)}")
    job = media.definitions().resolve_job_def(insert_job_name(media.spec))
    op_name = f"{media.spec.slug}__insert"
    with console.progress_bars():
        result = job.execute_in_process(run_config=console.run_config({"ops": {op_name: {"config": {"files": SAMPLES}}}}),
                                        instance=instance)
    if not result.success:
        raise SystemExit("the insert job failed; see the log above")

    _show("t.select(t.source_image.fileurl).collect()  # local files are referenced in place",
          media.select(media.source_image.fileurl).collect())
    _show("t.select(t.flipped.fileurl).collect()  # no destination: $PIXELTABLE_HOME/media",
          media.select(media.flipped.fileurl).collect())
    _show("t.select(t.rotated.fileurl).collect()  # explicit destination",
          media.select(media.rotated.fileurl).collect())
    _show("t.select(t.thumbnail.fileurl, t.width, t.height).collect()",
          media.select(media.thumbnail.fileurl, media.width, media.height).collect())
    if "serving_url" in media.spec.columns:
        from pxt_assets.functions import net

        _show("t.select(t.thumbnail.fileurl, presigned_url=net.presigned_url(t.thumbnail.fileurl, 3600)).collect()",
              media.select(media.thumbnail.fileurl,
                           presigned_url=net.presigned_url(media.thumbnail.fileurl, 3600)).collect())
    _show(
        "t.select(source=t.source_image.fileurl, rotated=t.rotated.fileurl, flipped=t.flipped.fileurl).collect()",
        media.select(source=media.source_image.fileurl, rotated=media.rotated.fileurl,
                     flipped=media.flipped.fileurl).collect(),
    )
    print(f"\nDone in {time.monotonic() - started:.1f} s. See it in the UI: dagster dev -w workspace.yaml")
