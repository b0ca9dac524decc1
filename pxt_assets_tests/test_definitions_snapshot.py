"""A snapshot of the demo's definitions (asset keys, their deps and groups, jobs, sensors, schedules): a
change to the asset graph users and scripts see shows up here as a diff. After an intended change, run with
PXT_UPDATE_SNAPSHOTS=1 and commit pxt_assets_tests/data/demo_definitions.json."""

from __future__ import annotations

import json
import os
import pathlib

import dagster as dg


SNAPSHOT = pathlib.Path(__file__).parent / "data" / "demo_definitions.json"


def snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {"deps": sorted(p.to_user_string() for p in node.parent_keys),
                                        "group": node.group_name, "partitioned": node.partitions_def is not None}
    repo = defs.get_repository_def()
    return {"assets": assets,
            "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
            "sensors": sorted(s.name for s in repo.sensor_defs),
            "schedules": sorted(s.name for s in repo.schedule_defs)}


def test_the_demo_definitions_match_their_snapshot(pxt_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PXT_DEMO_WATCH", str(tmp_path / "incoming"))  # the demo's sensor too
    from pxt_assets.definitions import defs  # the code location: the demo's defs.yaml, and the (empty) catalog

    got = snapshot(defs())
    if os.environ.get("PXT_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(SNAPSHOT.read_text())
