"""The Celery app pxt_assets' workers start with: `dagster-celery worker start -A pxt_assets.celery_app -y
celery.yaml` (docs/scale.md, "Executor").

dagster_celery.app's app and tasks (a run: CeleryRunLauncher's; a step: the Celery executor's), with the code
location's modules imported once, here, in the worker's main process: its pool's processes are forked from it,
so no task pays Python's imports of Dagster and pxt_assets again (about 2 s a process on 2 cores). Nothing runs
at import (no connection, no thread): `pxt_assets.definitions` builds its Definitions when a task loads them.
"""

from dagster_celery.app import app, execute_job, execute_plan, resume_job

import pxt_assets.definitions  # noqa: F401 - imported for the pool's processes to inherit

__all__ = ["app", "execute_job", "execute_plan", "resume_job"]
