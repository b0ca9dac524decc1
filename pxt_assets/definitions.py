"""The Definitions that `workspace.yaml` and `dagster job execute -m pxt_assets.definitions` load: the
tables declared in code (pxt_assets/defs/) and the tables of the persistent catalog (made from Python with
pxt.create_table), side by side. A catalog file that cannot be read is reported and skipped, so one bad file
does not take the code location down; reload the location in the UI to pick up new catalog tables."""

import warnings

import pxt_assets as pxt
from pxt_assets.api import catalog_tables, merge_tables
from pxt_assets.defs.demo import media

_catalog, _errors = catalog_tables()
for _path, _error in _errors:
    warnings.warn(f"pxt_assets: skipped catalog table {_path}: {_error}", stacklevel=1)

tables = merge_tables([media], _catalog)


def _executor():
    """Celery workers when PXT_CELERY_BROKER is set (the [distributed] extra): the tables' steps run on
    whichever worker takes them (`dagster-celery worker start -A dagster_celery.app -y celery.yaml`)."""
    import os

    broker = os.environ.get("PXT_CELERY_BROKER")
    if not broker:
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": broker, "backend": os.environ.get("PXT_CELERY_BACKEND", broker)})


defs = pxt.definitions(*tables, executor=_executor())
