"""The Dagster instance that inserts and notebook steps record their runs on."""

from __future__ import annotations

import os
import pathlib

import dagster as dg

from pxt_assets.config import load_settings

_DAGSTER_YAML = """\
# Written by pxt_assets: an embedded Dagster instance (SQLite storage under this folder).
telemetry:
  enabled: false
nux:
  enabled: false
"""


def dagster_home() -> pathlib.Path:
    """$DAGSTER_HOME, or `$PIXELTABLE_HOME/dagster` when unset (created with telemetry off)."""
    home = os.environ.get("DAGSTER_HOME")
    path = pathlib.Path(home).expanduser() if home else load_settings().home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(_DAGSTER_YAML)
    return path


def get_instance() -> dg.DagsterInstance:
    """The persistent instance under dagster_home(), so the UI shows what the Python API did."""
    home = dagster_home()
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))
