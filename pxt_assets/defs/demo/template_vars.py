"""Template variables of the demo's defs.yaml: where its explicit destinations are."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import dagster as dg


def outputs_dir() -> pathlib.Path:
    """Local destination folders: $PXT_DEMO_OUTPUTS, else $PIXELTABLE_HOME/demo_outputs."""
    base = os.environ.get("PXT_DEMO_OUTPUTS")
    if base:
        return pathlib.Path(base).expanduser()
    from pxt_assets.config import load_settings

    return load_settings().home / "demo_outputs"


@dg.template_var
def demo_destination() -> Callable[[str], str]:
    """`{{ demo_destination('rotated') }}`: `<$PXT_DEMO_DEST>rotated/` when that bucket prefix is set, else the
    local folder `<outputs>/rotated`."""

    def destination(name: str) -> str:
        cloud = os.environ.get("PXT_DEMO_DEST", "").strip()
        return cloud.rstrip("/") + f"/{name}/" if cloud else str(outputs_dir() / name)

    return destination
