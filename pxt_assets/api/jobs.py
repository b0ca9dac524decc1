"""Dagster definitions built from tables: assets, a batch job and an insert job per table, sensors,
schedules, the automation sensor and the IO managers; for a table that cannot be built, assets that say why."""

import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg

from pxt_assets import assets as asset_builder
from pxt_assets import check as invariants
from pxt_assets import launch
from pxt_assets import watch as watching
from pxt_assets.io_managers import MediaIOManager, TableIOManager
from pxt_assets.redaction import redact, redact_metadata, scrubbing
from pxt_assets.spec import SpecError, TableSpec, parse_table_path
from pxt_assets.stores import resources as store_resources
from pxt_assets.stores import retry

META_LOAD_ERROR = "pxt/load_error"


def definitions(*tables, resources: dict[str, Any] | None = None,
                executor: dg.ExecutorDefinition | None = None, automation_sensor: bool = True) -> dg.Definitions:
    """Dagster Definitions for `tables`: their assets, a batch job and an insert job each, an asset check
    each (pxt_assets.check: the table's invariants, on its first inserted column), the IO managers.

    `resources`: besides resources of your own, a dagster-aws `S3Resource`, a dagster-gcp `GCSResource` or a
    dagster-azure `AzureBlobStorageResource` (under any key; "s3", "gcs", "azure_blob" by convention) is the
    client those providers' files are read and written with (endpoint, credentials, region), instead of
    config.toml and the environment. `EnvVar` fields are read from the environment.

    `executor` runs the tables' jobs (e.g. `dagster_celery.celery_executor.configured({...})` for Celery
    workers; the `pxt_assets[distributed]` extra installs dagster-celery and dagster-postgres); by default,
    Dagster's (multiprocess for launched runs).

    `automation_sensor=False` leaves out the sensor that keeps computed columns following new batches, for
    Definitions merged with others that have it already.

    A table declared in a module (see `pxt_assets.api.table.declared_in_a_module`) has its destinations
    resolved and checked here, with these resources; one that cannot be used does not fail the call: that
    table's assets show the error (as for a YAML table), and its views' too."""
    # S3Resource / GCSResource / AzureBlobStorageResource given here are the stores' clients in this process
    # (the code location's, and so every run's, sensor's and lifecycle call's made from it)
    store_resources.use(resources)

    all_assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    jobs: list[Any] = []
    sensors: list[dg.SensorDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    failed: list[dg.Definitions] = []
    seen: set[str] = set()
    for table in tables:
        if table.spec.slug in seen:
            raise SpecError(f"table {table.path!r} is declared twice")
        seen.add(table.spec.slug)
    cannot_load = _resolve_destinations(tables)
    for table in tables:
        base = getattr(table, "base_spec", None)
        error = cannot_load.get(table.spec.path)
        if error is not None:
            failed.append(failed_table_definitions(table.path, list(table.spec.columns), error,
                                                   base=base.display_path if base is not None else None))
            continue
        table_assets = table.assets_definitions()
        all_assets.extend(table_assets)
        checks.append(invariants.asset_check(table))  # run on demand (the UI, a schedule): never per batch
        batch_job = asset_builder.batch_job_name(table.spec)
        jobs.append(dg.define_asset_job(
            batch_job,
            selection=dg.AssetSelection.assets(*table_assets).without_checks(),
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
    defs = dg.Definitions(
        executor=executor,
        assets=all_assets,
        asset_checks=checks,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        resources={**_IO_MANAGERS, **(resources or {})},
    )
    return dg.Definitions.merge(defs, *failed) if failed else defs


def _resolve_destinations(tables: Sequence[Any]) -> dict[tuple[str, ...], BaseException | str]:
    """Check the destinations tables declared in a module recorded (within the load budget, as for YAML
    tables); by table path, why those that cannot be used cannot. A view of such a base table fails with it."""
    out: dict[tuple[str, ...], BaseException | str] = {}
    with retry.capped_budget(retry.load_budget_s()):
        for table in sorted(tables, key=lambda t: hasattr(t, "base_spec")):  # base tables first
            base = getattr(table, "base_spec", None)
            if base is not None and base.path in out:
                out[table.spec.path] = f"its base table {base.display_path!r} cannot be loaded"
                continue
            try:
                table.resolve_destinations()
            except Exception as e:  # noqa: BLE001 - shown on this table's assets; the definitions still load
                out[table.spec.path] = e
    return out


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
        # a job keeps bad rows (each with its error), whatever the notebook API's on_error default is
        result = table.insert(rows, on_error="ignore", instance=context.instance, log=context.log,
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


def failed_table_definitions(path: str, columns: Sequence[str], error: BaseException | str, *,
                             base: str | None = None) -> dg.Definitions:
    """For a table (or a view of `base`) that cannot be built: assets of the names it declares, in its group
    and partitioned by its batches, with the error as their description; its batch job and (tables) insert job
    under their usual names. Materializing any of them fails with the error, so a run made for the table
    while it cannot be built fails saying why."""
    message = redact(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    try:
        spec = TableSpec(parse_table_path(path))
        base_spec = TableSpec(parse_table_path(base)) if base else spec
    except SpecError:
        spec = base_spec = TableSpec(("pxt_defs", "cannot_load"))
    description = f"table {path!r} cannot be loaded: {message}"
    warnings.warn(f"pxt_assets: {description}", stacklevel=2)
    pdef = dg.DynamicPartitionsDefinition(name=asset_builder.partitions_name(base_spec))
    specs = [dg.AssetSpec(asset_builder.asset_key(spec, c), group_name=spec.slug, kinds={"pxt"},
                          description=description[0].upper() + description[1:], partitions_def=pdef,
                          metadata={META_LOAD_ERROR: message}) for c in dict.fromkeys(list(columns) or ["table"])]
    failing = dg.multi_asset(specs=specs, name=f"{spec.slug}__cannot_load", can_subset=True)(
        _failing(description, message))
    jobs: list[Any] = [dg.define_asset_job(asset_builder.batch_job_name(spec), selection=dg.AssetSelection.assets(failing),
                                           partitions_def=pdef, description=description)]
    if base is None:
        @dg.op(name=f"{spec.slug}__insert", config_schema=InsertConfig.to_config_schema())
        def insert_op(context):  # noqa: ANN001 - Dagster reads the annotation; none is allowed here
            raise dg.Failure(description=description, metadata={META_LOAD_ERROR: message})

        jobs.append(dg.GraphDefinition(name=asset_builder.insert_job_name(spec), node_defs=[insert_op])
                    .to_job(description=description))
    return dg.Definitions(assets=[failing], jobs=jobs)


def _failing(description: str, message: str):
    def fail(context):  # noqa: ANN001 - Dagster reads the annotation; none is allowed here
        raise dg.Failure(description=description, metadata={META_LOAD_ERROR: message})

    return fail
