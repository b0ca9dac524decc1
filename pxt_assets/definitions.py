"""The Definitions that `workspace.yaml`, `dg` and `dagster job execute -m pxt_assets.definitions` load.

Nothing happens at import: Dagster calls `defs()` when it loads the code location. It builds the tables
declared in YAML (`pxt_assets/defs/*/defs.yaml`, `pxt_assets.MediaTableComponent`) and those of the persistent
catalog (made from Python with pxt.create_table), side by side. A table that cannot be built (a catalog entry
that cannot be read, a destination that does not answer) does not take the location down: its assets show the
error. Reload the location in the UI to pick up new catalog tables."""

from __future__ import annotations

import os
import pathlib
import sys
import types
import warnings
from typing import Any

import dagster as dg


def _component_tree():
    import pxt_assets.defs

    return dg.ComponentTree.from_module(defs_module=pxt_assets.defs,
                                     project_root=pathlib.Path(pxt_assets.defs.__file__).parents[2])


def _executor() -> dg.ExecutorDefinition | None:
    """The tables' jobs' executor:

    - PXT_EXECUTOR=in_process: every step of a run in the run's process. For runs that are themselves Celery
      tasks (dagster-celery's CeleryRunLauncher in dagster.yaml): a batch is one task on one worker, whose
      process has the code location imported already (`-A pxt_assets.celery_app`), with no process started
      per run or per step (docs/scale.md, "Executor");
    - else Celery workers when PXT_CELERY_BROKER is set (the [distributed] extra): each step of a run is a
      task of its own, run on whichever worker takes it (`dagster-celery worker start -A pxt_assets.celery_app
      -y celery.yaml`), and the run's process (started by the daemon's run launcher) waits for them."""
    if os.environ.get("PXT_EXECUTOR") == "in_process":
        return dg.in_process_executor
    broker = os.environ.get("PXT_CELERY_BROKER")
    if not broker:
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": broker, "backend": os.environ.get("PXT_CELERY_BACKEND", broker)})


def build() -> tuple[dg.Definitions, list[Any]]:
    """The code location's Definitions, and the tables in it."""
    import pxt_assets as pxt
    from pxt_assets.api import catalog_tables
    from pxt_assets.api.catalog import same_columns
    from pxt_assets.api.jobs import automation_sensors
    from pxt_assets.components import LOCATION_BUILD, MediaTableComponent, failed_table_definitions
    from pxt_assets.redaction import redact
    from pxt_assets.spec import SpecError, parse_table_path
    from pxt_assets.stores import retry

    token = LOCATION_BUILD.set(True)
    try:
        with retry.capped_budget(retry.load_budget_s()):
            tree = _component_tree()
            # The defs folder's own definitions: tree.build_defs() would add the "library" metadata of every
            # installed component package (it imports dagster_aws, _gcp, _azure and more: 2.5 s of each load,
            # and every run's step processes load the location again). The tree is not attached to the
            # Definitions either (`Definitions(component_tree=tree)`): the repository snapshot every code
            # server makes (the daemon's, the UI's at each reload) would then import those same packages to
            # name the tree's component types (2.1 s with 1,000 batches or none). Dagster reads an attached
            # tree only for state-backed and UI-managed components, which a MediaTableComponent is not.
            declared = tree.build_defs_at_path(tree.defs_module_path)
            components = tree.get_all_components(of_type=MediaTableComponent)
            catalog, errors = catalog_tables()
    finally:
        LOCATION_BUILD.reset(token)
    code = [t for c in components for t in c.tables]
    built = {t.spec.path: t for t in code}
    in_yaml = set()  # every path a defs.yaml declares, built or not: the catalog's entry there is not used
    for c in components:
        for p in c.table_paths():
            try:
                in_yaml.add(parse_table_path(p))
            except SpecError:
                pass
    extra = []
    for t in catalog:
        if t.spec.path not in in_yaml:
            extra.append(t)
        elif t.spec.path not in built or not same_columns(built[t.spec.path], t):
            warnings.warn(f"pxt_assets: table {t.path!r} is declared in YAML and in the catalog with different "
                          "columns; the YAML one is used (drop the other with pxt.drop_table)", stacklevel=1)
    parts = [declared, pxt.definitions(*extra, automation_sensor=False),
             dg.Definitions(sensors=automation_sensors([*code, *extra]))]
    for path, columns, error in errors:  # catalog entries that cannot be read: their assets show why
        try:
            shadowed = parse_table_path(path) in in_yaml
        except SpecError:
            shadowed = False
        if shadowed:
            warnings.warn(f"pxt_assets: the catalog's entry for {path!r} cannot be read ({redact(error)}); the YAML "
                          "table of that path is used", stacklevel=1)
        else:
            parts.append(failed_table_definitions(path, columns, error))
    executor = _executor()
    if executor is not None:
        parts.append(dg.Definitions(executor=executor))
    return dg.Definitions.merge(*parts), [*code, *extra]


@dg.definitions
def defs() -> dg.Definitions:
    from pxt_assets import dagster_compat

    key = _load_key()
    if key is not None and dagster_compat.reconstructing() and key in _BUILT:
        return _BUILT[key]
    built = build()[0]
    if key is not None:
        _BUILT.clear()
        _BUILT[key] = built
    return built


# The Definitions last built in this process during one of Dagster's loads, by what they were built from.
# Dagster calls defs() again for every job subset it reconstructs (six times in a run worker, twice in a step
# process, once more after a code server's own load), and each build is 0.1 s or more of CPU (about 7 ms more per
# table); a reconstruction takes them from here. A load that is not a reconstruction (a code server's start or
# reload, a script's defs()) always builds.
_BUILT: dict[Any, dg.Definitions] = {}


def _load_key() -> Any:
    """What the location's Definitions are built from, during one of Dagster's loads (else None): the
    environment, the settings, the catalog's tables (path, version, identity) and the defs folder loader. A
    change to any of them builds the Definitions again, as a new process would."""
    from pxt_assets import dagster_compat

    if not dagster_compat.DefinitionsLoadContext.is_set():
        return None
    from pxt_assets.api.catalog import catalog_versions
    from pxt_assets.config import current_settings

    return _component_tree, tuple(sorted(os.environ.items())), current_settings(), catalog_versions()


def load_tables() -> list[Any]:
    """The tables the code location has (YAML and catalog), e.g. for `python -m pxt_assets show`."""
    return build()[1]


def code_table(path: str) -> Any:
    """A table declared in YAML under pxt_assets/defs, by path ('blob_storage_demo/media')."""
    from pxt_assets.components import MediaTableComponent
    from pxt_assets.spec import SpecError, parse_table_path

    key = parse_table_path(path)
    tree = _component_tree()
    for component in tree.get_all_components(of_type=MediaTableComponent):
        if any(parse_table_path(p) == key for p in component.table_paths()):
            tables = component.build_tables()
            return next(t for t in tables if t.spec.path == key)
    raise SpecError(f"no table {path!r} is declared in pxt_assets/defs")


class _CallableModule(types.ModuleType):
    """`pxt.definitions(...)` is a function and `pxt_assets.definitions` this module: when Python first imports
    the module, it binds it to the package's attribute `definitions` (the language reference, "Submodules"),
    which hid the function. So the module is callable, and calling it is calling that function: both
    `pxt.definitions(t)` and `pxt_assets.definitions.defs` keep working, whichever was imported first.

    This is Python's documented way to customise a module ("Customizing module attribute access": set the
    module's `__class__` to a subclass of types.ModuleType), not a Dagster internal. The alternatives break a
    caller: renaming the module breaks `-m pxt_assets.definitions`; importing it early and rebinding the
    function breaks `pxt_assets.definitions.load_tables()` and `import pxt_assets.definitions as location`.
    `pxt_assets_tests/test_dagster_compat.py` checks both uses."""

    def __call__(self, *tables: Any, **kwargs: Any) -> dg.Definitions:
        from pxt_assets.api.jobs import definitions

        return definitions(*tables, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
