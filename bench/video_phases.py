"""`python -m bench.video_phases MODE [--after]`: where the pxt side of `bench video` spends its time, by phase.

The bench video (bench/.cache, made by `python -m bench video`) from a local path, thumbnails to a local folder,
in a fresh home (as `bench video`'s pxt side, without moto): the seconds of the insert, `create_view` and
`add_computed_column` (with `--after`, the view and its column defined after the insert, all timed; else
defined first, the insert alone timed), and inside them the Dagster instance openings (`get_instance`, the
first one creating the home's SQLite storages) and each run (`execute_in_process`). One JSON line.
MODE: fps1, all, keyframes.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import time


def main(argv: list[str]) -> None:
    mode, after = argv[0], "--after" in argv[1:]
    home = tempfile.mkdtemp(prefix="bench-video-phases-")
    os.environ.update(PIXELTABLE_HOME=home, DAGSTER_HOME=os.path.join(home, "dagster"))
    video = pathlib.Path(__file__).with_name(".cache") / "test_720p_60s.mp4"
    if not video.exists():
        raise SystemExit(f"{video} is missing: `python -m bench video` makes it")

    import pxt_assets as pxt
    from bench.video import THUMB, _kwargs
    from pxt_assets import launch
    from pxt_assets.api import table as table_mod
    from pxt_assets.functions.video import frame_iterator

    phases: dict[str, float] = {}
    opened: list[float] = []
    runs: list[tuple[str, float]] = []
    real_instance, real_run = table_mod.get_instance, launch.execute_in_process

    def get_instance():  # noqa: ANN202
        t = time.perf_counter()
        try:
            return real_instance()
        finally:
            opened.append(round(time.perf_counter() - t, 3))

    def execute_in_process(job, **kwargs):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        try:
            return real_run(job, **kwargs)
        finally:
            runs.append((job.name, round(time.perf_counter() - t, 3)))

    table_mod.get_instance, launch.execute_in_process = get_instance, execute_in_process
    videos = pxt.create_table("videos", {"video": pxt.Video})

    def define() -> None:
        t = time.perf_counter()
        frames = pxt.create_view("frames", videos, iterator=frame_iterator(videos.video, **_kwargs(mode)))
        phases["create_view"] = time.perf_counter() - t
        t = time.perf_counter()
        frames.add_computed_column(thumb=frames.frame.resize(THUMB), destination=os.path.join(home, "thumbs"))
        phases["add_computed_column"] = time.perf_counter() - t

    os.makedirs(os.path.join(home, "thumbs"))
    if not after:
        define()
        opened.clear()
        runs.clear()
    started = time.perf_counter()
    t = time.perf_counter()
    videos.insert([{"video": str(video)}])
    phases["insert"] = time.perf_counter() - t
    if after:
        define()
    phases["timed"] = time.perf_counter() - started
    print(json.dumps({"mode": mode, "after": after, **{k: round(v, 3) for k, v in phases.items()},
                      "get_instance": opened, "runs": runs}))


if __name__ == "__main__":
    main(sys.argv[1:])
