"""Dagster definitions built from tables: assets, a batch job and an insert job per table, sensors,
schedules, the automation sensor and the IO managers."""


from typing import Any

import dagster as dg

from pxt_assets import assets as asset_builder
from pxt_assets import launch
from pxt_assets import watch as watching
from pxt_assets.io_managers import MediaIOManager, TableIOManager
from pxt_assets.redaction import redact_metadata, scrubbing
from pxt_assets.spec import SpecError
from pxt_assets.stores import resources as store_resources


def definitions(*tables, resources: dict[str, Any] | None = None,
                executor: dg.ExecutorDefinition | None = None, automation_sensor: bool = True) -> dg.Definitions:
    """Dagster Definitions for `tables`: their assets, a batch job and an insert job each, the IO managers.

    `resources`: besides resources of your own, a dagster-aws `S3Resource`, a dagster-gcp `GCSResource` or a
    dagster-azure `AzureBlobStorageResource` (under any key; "s3", "gcs", "azure_blob" by convention) is the
    client those providers' files are read and written with (endpoint, credentials, region), instead of
    config.toml and the environment. `EnvVar` fields are read from the environment.

    `executor` runs the tables' jobs (e.g. `dagster_celery.celery_executor.configured({...})` for Celery
    workers; the `pxt_assets[distributed]` extra installs dagster-celery and dagster-postgres); by default,
    Dagster's (multiprocess for launched runs).

    `automation_sensor=False` leaves out the sensor that keeps computed columns following new batches, for
    Definitions merged with others that have it already."""
    # S3Resource / GCSResource / AzureBlobStorageResource given here are the stores' clients in this process
    # (the code location's, and so every run's, sensor's and lifecycle call's made from it)
    store_resources.use(resources)

    all_assets: list[dg.AssetsDefinition] = []
    jobs: list[Any] = []
    sensors: list[dg.SensorDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    seen: set[str] = set()
    for table in tables:
        if table.spec.slug in seen:
            raise SpecError(f"table {table.path!r} is declared twice")
        seen.add(table.spec.slug)
        table_assets = table.assets_definitions()
        all_assets.extend(table_assets)
        batch_job = asset_builder.batch_job_name(table.spec)
        jobs.append(dg.define_asset_job(
            batch_job,
            selection=dg.AssetSelection.assets(*table_assets),
            partitions_def=table.partitions_def,
            description=f"Materialize one batch (partition) of table {table.path!r}: every column.",
        ))
        if not hasattr(table, "base_spec"):  # views get their rows from their base table
            jobs.append(_insert_job(table))
        w = table._watch
        if w is not None:
            build = watching.build_schedule if w.cron_schedule else watching.build_sensor
            target = schedules if w.cron_schedule else sensors
            target.append(build(table.spec, w, batch_job, table.partitions_def))
    if automation_sensor:
        sensors.extend(automation_sensors(tables))
    return dg.Definitions(
        executor=executor,
        assets=all_assets,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        resources={**_IO_MANAGERS, **(resources or {})},
    )


# Dagster's default automation sensor starts stopped; this one runs, so columns (and views) follow new batches
# of their tables, however the batch came (a sensor's run, the UI, `dagster job execute`). One object, shared
# by every Definitions made here, so that they merge.
AUTOMATION_SENSOR = "pxt_assets_automation_sensor"
_AUTOMATION_SENSOR = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR, target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=10,
)

# One instance each, shared by every call: Definitions of separately declared tables (YAML components, the
# catalog) merge only when the same resource key holds the same object.
_IO_MANAGERS = {asset_builder.TABLE_IO: TableIOManager(), asset_builder.MEDIA_IO: MediaIOManager()}


def automation_sensors(tables: Any) -> list[dg.SensorDefinition]:
    """The automation sensor, if any of `tables` has columns (or is a view) that follow new batches."""
    needed = any(t.automation and (t.spec.computed_columns() or hasattr(t, "base_spec")) for t in tables)
    return [_AUTOMATION_SENSOR] if needed else []


class InsertConfig(dg.Config):
    """Run config of a table's insert job: `files` (paths or URLs for the table's first media column),
    and/or `rows` (full rows as {column: value})."""

    files: list[str] = []
    rows: list[dict[str, Any]] = []


def _insert_job(table) -> dg.JobDefinition:
    media_cols = [c.name for c in table.spec.source_columns() if c.is_media]

    @dg.op(name=f"{table.spec.slug}__insert", description=f"Insert a batch into {table.path!r} and materialize it.")
    @scrubbing  # a failure's error, as Dagster stores it, carries no credential
    def insert_op(context: dg.OpExecutionContext, config: InsertConfig) -> dg.Output[str]:
        rows: list[dict[str, Any]] = [dict(r) for r in config.rows]
        if config.files:
            if not media_cols:
                raise dg.Failure(f"table {table.path!r} has no media column to insert `files` into; use `rows`")
            rows.extend({media_cols[0]: f} for f in config.files)
        if not rows:
            raise dg.Failure(f"nothing to insert into {table.path!r}: give `files` or `rows` in the run config")
        # The batch's run is submitted through the instance (from this run's own code location), not nested in
        # this op: it runs on the deployment's executor. Only an instance that would leave it queued with no
        # daemon to launch it (a dagster.yaml without pxt_assets' run coordinator) runs it here instead.
        submit = launch.launches_at_once(context.instance)
        if not submit:
            context.log.warning("this instance queues runs for a daemon: the batch runs inside this op instead "
                                "(set run_coordinator to DefaultRunCoordinator, or run dagster-daemon)")
        result = table.insert(rows, instance=context.instance, log=context.log,
                              tags={"pxt/parent_run_id": context.run_id},
                              _code_location=launch.target_of_run(context.dagster_run), _submit=submit)
        context.log.info(f"{result.num_rows} rows inserted with {result.num_errors} errors")
        return dg.Output(result.batch, metadata=redact_metadata({"batch": result.batch, "rows": result.num_rows,
                                                                 "errors": result.num_errors, "run_id": result.run_id}))

    @dg.job(name=asset_builder.insert_job_name(table.spec),
            description=f"Insert the files or rows in the run config into {table.path!r} as a new batch, "
                        "then materialize every column for that batch.")
    def insert_job() -> None:
        insert_op()

    return insert_job
