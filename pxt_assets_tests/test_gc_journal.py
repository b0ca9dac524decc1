"""gc deletes only what this database wrote (issue #26 item 1): two homes sharing one destination, each
collecting garbage with --min-age 0, never delete each other's files."""

from __future__ import annotations

import os
import subprocess
import sys

from pxt_assets_tests.emulators import REPO

HOME_CODE = """
import sys
import pxt_assets as pxt
from pxt_assets import lifecycle, stores
dest, images = sys.argv[1], sys.argv[2:]
t = pxt.MediaTable('shared/t', {'img': pxt.Image})
t.add_computed_column(rot=t.img.rotate(90), destination=dest)
if images:
    t.insert([{'img': p} for p in images])
lifecycle.collect_garbage(dest, delete=True, min_age=0)
urls = [u for u in t.select(t.rot.fileurl).collect().iloc[:, 0]]
print('MISSING' if any(not stores.store_for(u).exists(u) for u in urls) else 'ALL THERE', len(urls))
"""


def _home(tmp_path, name, dest, images):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_"))}
    env.update(PIXELTABLE_HOME=str(tmp_path / name), DAGSTER_HOME=str(tmp_path / name / "dagster"))
    return subprocess.run([sys.executable, "-c", HOME_CODE, dest, *map(str, images)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_two_homes_sharing_a_folder_never_collect_each_others_files(tmp_path, images):
    dest = tmp_path / "shared_out"
    dest.mkdir()
    first = _home(tmp_path, "a", str(dest), images[:2])
    assert first.returncode == 0, first.stderr[-3000:]
    second = _home(tmp_path, "b", str(dest), images[1:])
    assert second.returncode == 0, second.stderr[-3000:]
    again = _home(tmp_path, "a", str(dest), [])  # home A collects again, after B wrote
    assert again.returncode == 0, again.stderr[-3000:]
    # each home's rows still name files that exist
    for done in (first, second):
        assert done.stdout.strip().splitlines()[-1].startswith("ALL THERE"), done.stdout
    check_b = _home(tmp_path, "b", str(dest), [])
    assert check_b.stdout.strip().splitlines()[-1] == f"ALL THERE {len(images) - 1}", check_b.stdout + check_b.stderr[-2000:]
