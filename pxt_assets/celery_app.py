"""The Celery app pxt_assets' workers start with: `dagster-celery worker start -A pxt_assets.celery_app -y
celery.yaml` (docs/scale.md, "Executor").

dagster_celery.app's app and tasks (a run: CeleryRunLauncher's; a step: the Celery executor's), with the code
location's modules imported once, here, in the worker's main process: its pool's processes are forked from it,
so no task pays Python's imports of Dagster, pxt_assets and the SDKs again. Measured on 2 shared cores
(`python -m bench scaleout`): `import pxt_assets.definitions` 1.5-6 s, and a process's first load of the
definitions another 1.2-5.9 s, half of it the imports of WARM (boto3, psycopg, jinja2...); its later loads
0.05-0.14 s. Nothing runs at import (no connection, no client, no thread), so forking after it is safe: each
pool process makes its own clients and connections when a task first needs them.
"""

import importlib

from dagster_celery.app import app, execute_job, execute_plan, resume_job

import pxt_assets.definitions  # noqa: F401 - imported for the pool's processes to inherit

#: what a process's first load of the definitions and its first batch import beyond pxt_assets.definitions
#: (those missing here, e.g. an SDK that is not installed, are left to the task that needs them)
WARM = ("pxt_assets.stores.s3", "pxt_assets.stores.gcs", "pxt_assets.stores.azure", "pxt_assets.rowstore.migrate",
        "psycopg", "jinja2", "upath", "fsspec", "PIL.Image", "pxt_assets.assets", "pxt_assets.io_managers")

for _name in WARM:
    try:
        importlib.import_module(_name)
    except ImportError:
        pass

__all__ = ["app", "execute_job", "execute_plan", "resume_job"]
