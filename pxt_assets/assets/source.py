"""The source step: a batch's inserted values stored (media referenced in place, copied or uploaded: the IO
layer decides, see io_managers/ingest.py)."""

# No `from __future__ import annotations`: Dagster reads the step functions' context annotations.

from collections.abc import Iterator

import dagster as dg

from pxt_assets.assets.names import MEDIA_IO, column_out
from pxt_assets.assets.run import Progress, batch_step, commit, computed_later_in_run, map_rows, on_worker
from pxt_assets.io_managers import MediaIOManager
from pxt_assets.io_managers.ingest import ingest_value
from pxt_assets.io_managers.rows import row_id
from pxt_assets.redaction import scrubbing
from pxt_assets.rowstore.values import ERRORS_KEY
from pxt_assets.spec import TableSpec


def build_source_asset(spec: TableSpec, pdef: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    columns = spec.source_columns()

    @dg.multi_asset(
        name=f"{spec.slug}__source",
        outs={c.name: column_out(spec, c, pdef, required=True) for c in columns},
        partitions_def=pdef,
        required_resource_keys={MEDIA_IO},
    )
    @scrubbing  # a failed step's error, as Dagster stores it, carries no credential
    @batch_step(spec)
    def source(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
        media_io: MediaIOManager = getattr(context.resources, MEDIA_IO)
        batch = context.partition_key
        on_worker(context)
        rows = media_io.manifest(spec, batch)
        media_io.start_run(spec, batch, context.run_id)
        bad_rows: set[int] = set()
        for col in columns:
            writer = media_io.writer_for(spec, col) if col.is_media and col.destination else None
            progress = Progress(context.log, col.name, len(rows))
            records = map_rows(
                lambda i: ingest_value(col, writer, row_id(batch, i), rows[i].get(col.name),
                                       rows[i].get(ERRORS_KEY, {}).get(col.name)),
                len(rows), progress,
            )
            if writer is not None:
                writer.flush()
            for i, r in enumerate(records):
                if r["error"] is not None:
                    bad_rows.add(i)
                    named = r["error"].startswith(f"{col.name}: ")
                    context.log.warning(f"row {r['row_id']} {'' if named else col.name + ': '}{r['error']}")
            yield dg.Output(records, output_name=col.name)
        context.log.info(f"{spec.display_path}: {len(rows)} rows inserted with {len(bad_rows)} errors")
        if not computed_later_in_run(context, spec):
            commit(context, media_io, spec, batch)

    return source
