"""Building Dagster assets, jobs and partitions from a table spec (one module per step, names in names.py).

Per table `dir/name` (slug `dir__name`):
- partitions `dir__name__batches`: one dynamic partition per ingest batch (an insert, a sensor tick);
- `dir__name__source`: a multi-asset with one asset per source column; it reads the batch's manifest from
  the database and stores each inserted value (media referenced in place, copied or uploaded: the IO layer
  decides, see io_managers/ingest.py) (source.py);
- `dir__name__computed`: a multi-asset with one asset per computed column, each with lineage edges to the
  columns its expression reads; columns are computed in one pass per row, so a source is fetched and
  decoded once however many columns read it; it can be subset (one column, e.g. a backfill) (computed.py);
- job `dir__name__batch_job`: materializes one batch partition of the table;
- job `dir__name_job`: inserts a batch from run config (files or URLs) and materializes it.

Each step stages its columns' records through the IO manager; the last step of a run that writes the batch
commits it, so the batch's rows appear in one transaction after every file they name is written.
"""

from pxt_assets.assets.computed import build_computed_asset, compute_batch
from pxt_assets.assets.names import (
                                     MEDIA_IO,
                                     TABLE_IO,
                                     asset_key,
                                     batch_job_name,
                                     insert_job_name,
                                     partitions_name,
)
from pxt_assets.assets.source import build_source_asset
from pxt_assets.assets.view import build_view_asset, frame_reference

__all__ = ["MEDIA_IO", "TABLE_IO", "asset_key", "batch_job_name", "build_computed_asset", "build_source_asset",
           "build_view_asset", "compute_batch", "frame_reference", "insert_job_name", "partitions_name"]
